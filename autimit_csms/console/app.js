// The operator console: sign-in, routing and the pages. Everything it shows comes from
// the REST API (lib.js api()); the token lives in sessionStorage only.

import {
  ApiError, ago, all, api, badge, copyText, csvCell, download, duration, errorBox,
  fromLocalInput, h, kwh, link, localMidnight, plainWords, replace, session, table, when,
  whenUnauthorized,
} from "./lib.js";
import { bucketFor, dropCharts, lineChart, meterSeries, timeline } from "./charts.js";

const POLL_MS = 4000;
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const $ = (id) => document.getElementById(id);

let me = null;           // GET /api/me of the signed-in token
let page = null;         // the current page's lifetime: timers, and whether it is still shown
let flash = null;        // a notice for the next page drawn

// ------------------------------------------------------------------ sign-in

async function signIn(token) {
  const { data } = await api("GET", "/me", { token });
  session.token = token;
  me = data;
}

function signOut(message, { keepHash = false } = {}) {
  endPage();
  session.clear();
  me = null;
  replace($("view"));
  $("view").hidden = true;
  $("nav").hidden = true;
  $("who").hidden = true;
  $("sign-in").hidden = false;
  $("token").value = "";
  const error = $("sign-in-error");
  error.hidden = !message;
  error.textContent = message || "";
  if (location.hash && !keepHash) history.replaceState(null, "", location.pathname);
  $("token").focus();
}

function showApp() {
  $("sign-in").hidden = true;
  $("sign-in-error").hidden = true;
  $("view").hidden = false;
  $("nav").hidden = false;
  $("who").hidden = false;
  $("who-name").textContent = me.role === "admin"
    ? "Admin" : `Account: ${me.account ? me.account.name : me.accountId}`;
  for (const a of document.querySelectorAll("#nav a[data-page=provision]")) {
    a.textContent = me.role === "admin" ? "Provision" : "Provision stations";
  }
  route();
}

whenUnauthorized(() => signOut("Your sign-in is no longer accepted. Sign in again."));

// ------------------------------------------------------------------ pages and routing

function endPage() {
  if (page) {
    page.alive = false;
    for (const timer of page.timers) clearInterval(timer);
  }
  dropCharts();
  page = null;
}

function newPage() {
  endPage();
  page = { alive: true, timers: [] };
  const current = page;
  current.every = (ms, fn) => {
    let running = false;  // a slow answer is not overtaken by the next poll
    const run = async () => {
      if (!current.alive || document.hidden || running) return;
      running = true;
      try { await fn(); } catch (error) { if (current.alive) current.onError?.(error); }
      running = false;
    };
    current.timers.push(setInterval(run, ms));
  };
  const view = $("view");
  replace(view);
  return { view, current };
}

const ROUTES = [
  [/^#\/stations\/([0-9a-f-]{36})$/, stationPage],
  [/^#\/sessions\/([0-9a-f-]{36})$/, sessionPage],
  [/^#\/stations$/, stationsPage],
  [/^#\/sessions$/, sessionsPage],
  [/^#\/id-tags$/, idTagsPage],
  [/^#\/provision$/, provisionPage],
  [/^#\/overview$/, overviewPage],
];

function route() {
  if (!me) return;
  const hash = location.hash || "#/overview";
  for (const [pattern, render] of ROUTES) {
    const match = hash.match(pattern);
    if (match) {
      for (const a of document.querySelectorAll("#nav a")) {
        const here = hash.startsWith(a.getAttribute("href"));
        a.classList.toggle("current", here);
        if (here) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
      }
      const { view, current } = newPage();
      render(view, current, ...match.slice(1)).catch((error) => {
        if (current.alive) {
          view.append(errorBox(error), h("p", {}, link("#/stations", "Back to the stations"),
            " · ", link("#/overview", "the overview")));
        }
      });
      return;
    }
  }
  location.hash = "#/overview";
}

window.addEventListener("hashchange", route);

function updatedLine(every = POLL_MS) {
  const el = h("p", { class: "updated", id: "updated", "aria-live": "polite" }, "Loading…");
  return {
    el,
    ok() {
      el.textContent = `Updated ${new Date().toLocaleTimeString()}`
        + (every ? ` · refreshes every ${every / 1000} s` : "");
      el.classList.remove("error");
    },
    failed(error) { el.textContent = `Not updated: ${plainWords(error)}`; el.classList.add("error"); },
  };
}

// ------------------------------------------------------------------ overview

async function overviewPage(view, current) {
  const tiles = h("div", { class: "tiles", id: "overview-tiles" });
  const connectors = h("div", { class: "tiles", id: "overview-connectors" });
  const attention = h("div", { id: "overview-attention" }, h("p", { class: "muted" }, "Loading…"));
  const status = updatedLine();
  // The admin sees every account's network, or one account's.
  const accounts = me.role === "admin" ? await all("/accounts") : [];
  if (!current.alive) return;
  const scope = h("select", { id: "overview-account", "aria-label": "Account" },
    h("option", { value: "" }, "All accounts"),
    accounts.map((a) => h("option", { value: a.id }, a.name)));
  view.append(
    h("div", { class: "row spread" },
      h("div", { class: "row" }, h("h1", {}, "Overview"), me.role === "admin" ? scope : null),
      status.el),
    h("section", { class: "card" }, h("h2", {}, "Stations and sessions"), tiles),
    h("section", { class: "card" }, h("h2", {}, "Connectors by status"), connectors),
    h("section", { class: "card" }, h("h2", {}, "Needs attention"), attention),
    h("p", { class: "muted small" }, "Energy and sessions count from today 00:00 on this "
      + "computer's clock; energy is each session's meter reading (so far, for active ones)."));
  const tile = (label, value, kind, id) => h("div", { class: `tile ${kind || ""}`, id },
    h("div", { class: "value" }, String(value)), h("div", { class: "label" }, label));
  const load = async () => {
    const { data } = await api("GET", "/overview", { params: {
      from: localMidnight(), accountId: scope.value } });
    if (!current.alive) return;
    const by = data.stations.byStatus;
    replace(tiles,
      tile("stations online", by.online || 0, "ok", "tile-online"),
      tile("offline", by.offline || 0, "idle", "tile-offline"),
      tile("faulted", by.faulted || 0, (by.faulted ? "bad" : ""), "tile-faulted"),
      tile("unavailable", by.unavailable || 0, "", "tile-unavailable"),
      tile("deactivated", data.stations.inactive, "", "tile-inactive"),
      tile("charging sessions now", data.sessions.active, "ok", "tile-active"),
      tile("energy today", kwh(data.sessions.energyWh), "", "tile-energy"),
      tile("sessions started today", data.sessions.startedSince, "", "tile-sessions"));
    const statuses = Object.entries(data.connectors.byStatus);
    replace(connectors, statuses.length
      ? statuses.map(([name, n]) => tile(name, n, name === "faulted" ? "bad" : "", `connectors-${name}`))
      : h("p", { class: "muted" }, "No connectors yet: provision a station."));
    status.ok();
  };
  // Active stations that are not online, worst first: what an operator goes to look at.
  const loadAttention = async () => {
    const stations = await all("/stations", { accountId: scope.value });
    if (!current.alive) return;
    const rank = { faulted: 0, offline: 1, unavailable: 2 };
    const trouble = stations.filter((s) => s.isActive && s.runtime.status !== "online")
      .sort((a, b) => rank[a.runtime.status] - rank[b.runtime.status]
        || (a.runtime.lastSeenAt || "").localeCompare(b.runtime.lastSeenAt || ""));
    replace(attention, trouble.length ? [
      table(["Station", "Status", "Last seen", "Last error"], trouble.slice(0, 10).map((s) => [
        link(`#/stations/${s.id}`, s.stationCode), badge(s.runtime.status),
        s.runtime.lastSeenAt ? ago(s.runtime.lastSeenAt) : "never connected",
        s.runtime.lastErrorCode || "—"]),
      { onRow: (i) => { location.hash = `#/stations/${trouble[i].id}`; } }),
      trouble.length > 10 ? link("#/stations", `All ${trouble.length} stations that are not online…`) : null,
    ] : h("p", { class: "muted" }, "Every active station is online."));
  };
  current.onError = (error) => status.failed(error);
  scope.addEventListener("change", () => Promise.all([load(), loadAttention()])
    .catch((error) => status.failed(error)));
  await Promise.all([load(), loadAttention()]).catch((error) => status.failed(error));
  current.every(POLL_MS, load);
  current.every(POLL_MS * 5, loadAttention);
}

// ------------------------------------------------------------------ stations list

function connectorBadges(connectors) {
  return h("span", { class: "row" }, connectors.map((c) => h("span", { title: `connector ${c.connectorNumber}` },
    `${c.connectorNumber} `, badge(c.status || "unknown"))));
}

async function locationNames() {
  const locations = await all("/locations");
  return new Map(locations.map((l) => [l.id, l]));
}

function stationState(station) {
  return station.isActive ? station.runtime.status : "inactive";
}

async function stationsPage(view, current) {
  const search = h("input", { type: "search", id: "station-search",
                              placeholder: "Code, location, model, serial…", "aria-label": "Search stations" });
  const filter = h("select", { id: "station-filter", "aria-label": "Status" },
    ["all", "online", "offline", "faulted", "unavailable", "inactive"].map((s) =>
      h("option", { value: s }, s === "all" ? "Any status" : s === "inactive" ? "deactivated" : s)));
  const list = h("div", { id: "stations-list" });
  const status = updatedLine();
  view.append(
    h("div", { class: "row spread" }, h("h1", {}, "Stations"), status.el),
    h("section", { class: "card" },
      h("div", { class: "row" }, h("label", {}, "Search", search), h("label", {}, "Status", filter),
        link("#/provision", "Provision a station…")),
      list));
  let stations = [];
  let locations = new Map();
  const render = () => {
    const words = search.value.trim().toLowerCase();
    const wanted = filter.value;
    const shown = stations.filter((s) => {
      if (wanted !== "all" && stationState(s) !== wanted) return false;
      if (!words) return true;
      const place = locations.get(s.locationId);
      return [s.stationCode, s.model, s.manufacturer, s.serialNumber, place?.name, place?.address,
        s.runtime.firmwareVersion].some((v) => v && v.toLowerCase().includes(words));
    });
    replace(list,
      h("p", { class: "muted small" }, `${shown.length} of ${plural(stations.length, "station")}`),
      table(["Station", "Status", "Connectors", "Last heartbeat", "Firmware", "Location", "Model"],
        shown.map((s) => [
          link(`#/stations/${s.id}`, s.stationCode),
          badge(stationState(s) === "inactive" ? "deactivated" : s.runtime.status, stationState(s)),
          connectorBadges(s.connectors),
          h("span", { title: when(s.runtime.lastHeartbeatAt) }, ago(s.runtime.lastHeartbeatAt)),
          s.runtime.firmwareVersion || "—",
          locations.get(s.locationId)?.name || "—",
          [s.manufacturer, s.model].filter(Boolean).join(" ") || "—",
        ]),
        { empty: stations.length ? "No station matches." : "No stations yet.",
          onRow: (i) => { location.hash = `#/stations/${shown[i].id}`; } }));
  };
  search.addEventListener("input", render);
  filter.addEventListener("change", render);
  const load = async () => {
    const [found, places] = await Promise.all([all("/stations"), locationNames()]);
    if (!current.alive) return;
    stations = found;
    locations = places;
    render();
    status.ok();
  };
  current.onError = (error) => status.failed(error);
  await load().catch((error) => { status.failed(error); list.append(errorBox(error)); });
  current.every(POLL_MS * 2, load);
}

// ------------------------------------------------------------------ one station

const PERIODS = [["1", "last hour"], ["6", "last 6 hours"], ["24", "last 24 hours"],
  ["168", "last 7 days"], ["720", "last 30 days"], ["custom", "chosen dates…"]];

const COMMANDS = {
  Reset: { about: "Restart the charger. Soft stops sessions first; Hard restarts at once.",
    fields: [["type", "Type", ["Soft", "Hard"]]] },
  TriggerMessage: { about: "Ask the charger to send a message now.",
    fields: [["requestedMessage", "Message", ["Heartbeat", "StatusNotification", "MeterValues",
      "BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification"]],
    ["connectorId", "Connector (optional)", "number"]] },
  RemoteStartTransaction: { about: "Start charging for an id tag.",
    fields: [["idTag", "Id tag", "text"], ["connectorId", "Connector (optional)", "number"]] },
  RemoteStopTransaction: { about: "Stop a running transaction.",
    fields: [["transactionId", "Transaction id", "number"]] },
  UnlockConnector: { about: "Release the cable of a connector.",
    fields: [["connectorId", "Connector", "number"]] },
  ChangeAvailability: { about: "Take a connector (0 = the whole station) in or out of service.",
    fields: [["connectorId", "Connector (0 = station)", "number"], ["type", "Availability", ["Inoperative", "Operative"]]] },
  GetConfiguration: { about: "Read configuration keys (empty = all).",
    fields: [["key", "Keys (comma-separated, optional)", "text"]] },
  ChangeConfiguration: { about: "Set one configuration key.",
    fields: [["key", "Key", "text"], ["value", "Value", "text"]] },
  ClearCache: { about: "Clear the charger's authorization cache.", fields: [] },
};

function commandPayload(action, form) {
  const payload = {};
  for (const [name, , kind] of COMMANDS[action].fields) {
    const raw = form.elements[name].value.trim();
    if (!raw) continue;
    if (action === "GetConfiguration" && name === "key") {
      payload.key = raw.split(",").map((k) => k.trim()).filter(Boolean);
    } else if (kind === "number") {
      payload[name] = Number(raw);
    } else {
      payload[name] = raw;
    }
  }
  return payload;
}

// The charger's answer in words (no raw JSON): its status, or the keys it returned.
function answerView(command) {
  const answer = command.response || {};
  const parts = [];
  if (answer.status) parts.push(h("p", { class: "headline" }, "The charger answered: ", badge(answer.status, answer.status)));
  if (Array.isArray(answer.configurationKey)) {
    const n = answer.configurationKey.length;
    parts.push(h("p", { class: "headline" }, `The charger answered with ${n} key${n === 1 ? "" : "s"}`));
    parts.push(table(["Key", "Value", "Read-only"], answer.configurationKey.map((k) => [
      k.key, h("td", { class: "wrap" }, k.value ?? "—"), k.readonly ? "yes" : "no"])));
  }
  if (Array.isArray(answer.unknownKey) && answer.unknownKey.length) {
    parts.push(h("p", {}, `Unknown keys: ${answer.unknownKey.join(", ")}`));
  }
  if (!parts.length) parts.push(h("p", { class: "headline" }, "The charger answered (no status in its answer)."));
  return parts;
}

// One line for the history: the charger's status, what it returned, or the error.
function answerSummary(command) {
  const answer = command.response;
  if (answer?.status) return answer.status;
  if (Array.isArray(answer?.configurationKey)) {
    const n = answer.configurationKey.length;
    const unknown = answer.unknownKey?.length ? `, ${answer.unknownKey.length} unknown` : "";
    return `${n} key${n === 1 ? "" : "s"}${unknown}`;
  }
  if (command.error) return `${command.error.code}: ${command.error.message || "no details"}`;
  return answer ? "answered" : "—";
}

function commandOutcome(command) {
  const took = command.sentAt && command.finishedAt
    ? ` in ${((new Date(command.finishedAt) - new Date(command.sentAt)) / 1000).toFixed(1)} s` : "";
  switch (command.status) {
    case "answered": {
      const kind = command.response?.status && !["Accepted", "Unlocked"].includes(command.response.status) ? "warn" : "ok";
      return h("div", { class: `result ${kind}`, id: "command-result", dataset: { outcome: "answered" } },
        answerView(command), h("p", { class: "muted small" }, `${command.action}${took}`));
    }
    case "call_error": case "failed":
      return h("div", { class: "result bad", id: "command-result", dataset: { outcome: "error" } },
        h("p", { class: "headline" }, "The charger answered with an error"),
        h("p", {}, command.error ? `${command.error.code}: ${command.error.message || "no details"}` : "no details"));
    case "timeout": case "queued": case "sent":
      return h("div", { class: "result warn", id: "command-result", dataset: { outcome: "no-answer" } },
        h("p", { class: "headline" }, "No answer from the charger"),
        h("p", {}, "It did not answer in time. It may still carry the command out; see the history below."));
    case "offline":
    default:
      return h("div", { class: "result bad", id: "command-result", dataset: { outcome: "offline" } },
        h("p", { class: "headline" }, "Offline"),
        h("p", {}, "The charger is not connected, so the command was not sent."));
  }
}

function commandPanel(station, onSent) {
  const select = h("select", { id: "command-action", name: "action", "aria-label": "Command" },
    Object.keys(COMMANDS).map((a) => h("option", { value: a }, a)));
  const fields = h("div", { class: "row" });
  const about = h("p", { class: "muted small" });
  const button = h("button", { type: "submit", id: "command-send" }, "Send");
  const result = h("div", { id: "command-result-box" });
  const form = h("form", { class: "stack", id: "command-form" },
    h("div", { class: "row" }, h("label", {}, "Command", select)), about, fields,
    h("div", {}, button), result);
  const drawFields = () => {
    const action = select.value;
    about.textContent = COMMANDS[action].about;
    replace(fields, COMMANDS[action].fields.map(([name, label, kind]) => h("label", {}, label,
      Array.isArray(kind)
        ? h("select", { name }, kind.map((v) => h("option", { value: v }, v)))
        : h("input", { name, type: kind, min: kind === "number" ? 0 : undefined,
                       required: !label.includes("optional") && action !== "GetConfiguration" })))) ;
  };
  select.addEventListener("change", () => { drawFields(); replace(result); });
  drawFields();
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const action = select.value;
    button.disabled = true;
    button.textContent = "Waiting for the charger…";
    replace(result, h("p", { class: "muted", id: "command-waiting" }, `${action} sent; waiting for the charger's answer…`));
    try {
      const { data } = await api("POST", `/stations/${station.id}/commands/${action}`,
        { body: commandPayload(action, form), okStatuses: [502, 504] });
      replace(result, commandOutcome(data));
    } catch (error) {
      if (error instanceof ApiError && error.status === 409 && error.code === "station_offline") {
        replace(result, commandOutcome({ status: "offline", action }));
      } else {
        replace(result, h("div", { class: "result bad", id: "command-result", dataset: { outcome: "refused" } }, plainWords(error)));
      }
    } finally {
      button.disabled = false;
      button.textContent = "Send";
      onSent();
    }
  });
  return { form, setTransaction(txId) {
    if (select.value === "RemoteStopTransaction" && txId && !form.elements.transactionId.value) {
      form.elements.transactionId.value = txId;
    }
  } };
}

function secretPanel(title, provisioning, note) {
  const line = (label, value, id) => {
    const input = h("input", { readonly: true, value, id, "aria-label": label });
    const button = h("button", { type: "button", class: "secondary small" }, "Copy");
    button.addEventListener("click", () => copyText(input, button));
    return h("label", {}, label, h("div", { class: "copy-line" }, input, button));
  };
  const panel = h("section", { class: "card secret", id: "secret-panel" },
    h("h2", {}, title),
    h("p", { class: "warning" }, "This secret is shown only this once. Copy it now and set it on "
      + "the charger: it cannot be shown again, because only a hash of it is stored."),
    note ? h("p", {}, note) : null,
    line("OCPP URL (the charger's central system address)", provisioning.ocppConnectionUrl, "secret-url"),
    line("Station code (Basic Auth user name)", provisioning.stationCode, "secret-code"),
    line("Secret (Basic Auth password / AuthorizationKey)", provisioning.stationSecret, "secret-value"),
    h("button", { type: "button", class: "secondary", onclick: () => panel.remove() }, "I have saved it — hide"));
  return panel;
}

async function stationPage(view, current, stationId) {
  let station = (await api("GET", `/stations/${stationId}`)).data;
  if (!current.alive) return;
  const location = await api("GET", `/locations/${station.locationId}`).then((r) => r.data, () => null);
  const status = updatedLine();
  const head = h("section", { class: "card", id: "station-head" });
  const connectorsBox = h("div", { id: "station-connectors" });
  const activeBox = h("div", { id: "station-active" });
  const historyBox = h("div", { id: "command-history" });
  const secretBox = h("div", { id: "secret-box" });
  const period = h("select", { id: "period", "aria-label": "Period" },
    PERIODS.map(([v, label]) => h("option", { value: v, selected: v === "24" }, label)));
  const customFrom = h("input", { type: "datetime-local", name: "from" });
  const customTo = h("input", { type: "datetime-local", name: "to" });
  const custom = h("form", { class: "row", id: "custom-period", hidden: true },
    h("label", {}, "From", customFrom), h("label", {}, "To", customTo),
    h("button", { type: "submit", class: "secondary" }, "Show"));
  const historyError = h("div", { id: "history-error" });
  const powerChart = h("div", { class: "chart", id: "power-chart" });
  const energyChart = h("div", { class: "chart", id: "energy-chart" });
  const uptimeBox = h("div", { id: "uptime" });
  const eventsBox = h("div", { id: "status-events" });
  const faultsBox = h("div", { id: "faults" });
  const sessionsBox = h("div", { id: "station-sessions" });
  const configBox = h("div", { id: "station-configuration" });
  const panel = commandPanel(station, () => Promise.all([loadCommands(), loadConfiguration()]).catch(() => {}));

  const actions = h("div", { class: "row" });
  view.append(
    h("div", { class: "row spread" }, h("h1", { id: "station-title" }, `Station ${station.stationCode}`), status.el),
    secretBox, head,
    h("div", { class: "grid two" },
      h("section", { class: "card" }, h("h2", {}, "Connectors"), connectorsBox,
        h("h3", {}, "Charging now"), activeBox),
      h("section", { class: "card" }, h("h2", {}, "Send a command"), panel.form)),
    h("section", { class: "card" }, h("h2", {}, "Command history"), historyBox),
    h("section", { class: "card" },
      h("div", { class: "row spread" }, h("h2", {}, "History"),
        h("div", { class: "row" }, h("label", {}, "Period", period), custom)),
      historyError,
      h("div", { class: "grid two" }, powerChart, energyChart),
      h("h3", {}, "Status over the period"), uptimeBox,
      h("div", { class: "grid two" },
        h("div", {}, h("h3", {}, "Connection and station status events"), eventsBox),
        h("div", {}, h("h3", {}, "Faults"), faultsBox))),
    h("section", { class: "card" }, h("h2", {}, "Recent sessions"), sessionsBox),
    h("section", { class: "card" }, h("details", {},
      h("summary", {}, h("strong", {}, "Configuration keys"), " — as the charger last reported "
        + "them (GetConfiguration) or accepted a change"), configBox)));

  const drawHead = () => {
    const r = station.runtime;
    const state = stationState(station);
    replace(head,
      h("div", { class: "row spread" },
        h("div", { class: "row" }, badge(state === "inactive" ? "deactivated" : r.status, state),
          h("span", { id: "station-status", dataset: { status: r.status } }, r.status === "online"
            ? `Connected since ${when(r.connectedAt)}` : `Last seen ${ago(r.lastSeenAt)}`)),
        actions),
      h("dl", { class: "facts" },
        h("dt", {}, "Location"), h("dd", {}, location ? `${location.name}, ${location.address}` : "—"),
        h("dt", {}, "Registration"), h("dd", {}, r.registrationStatus === "new" ? "never booted" : r.registrationStatus),
        h("dt", {}, "Last heartbeat"), h("dd", {}, r.lastHeartbeatAt ? `${ago(r.lastHeartbeatAt)} (${when(r.lastHeartbeatAt)})` : "never"),
        h("dt", {}, "Firmware"), h("dd", {}, r.firmwareVersion || "—"),
        h("dt", {}, "Model"), h("dd", {}, [station.manufacturer, station.model].filter(Boolean).join(" ") || "—"),
        h("dt", {}, "Serial number"), h("dd", {}, station.serialNumber || "—"),
        h("dt", {}, "OCPP URL"), h("dd", { class: "mono" }, station.ocppConnectionUrl),
        h("dt", {}, "Last error"), h("dd", {}, r.lastErrorCode || "none")));
    replace(actions,
      h("button", { type: "button", class: "secondary", id: "rotate-secret", onclick: rotate }, "Issue a new secret"),
      station.isActive
        ? h("button", { type: "button", class: "danger", id: "deactivate", onclick: () => setActive(false) }, "Deactivate")
        : h("button", { type: "button", id: "activate", onclick: () => setActive(true) }, "Activate"));
    replace(connectorsBox, table(["#", "Status", "Charger says", "Error", "Since"],
      station.connectors.map((c) => [String(c.connectorNumber), badge(c.status || "unknown"),
        c.ocppStatus || "—", c.errorCode || "—", when(c.statusAt)]), { empty: "No connectors." }));
  };

  async function rotate() {
    if (!confirm(`Issue a new secret for ${station.stationCode}? The current one stops working `
      + "for new connections at once; the charger must be given the new one.")) return;
    try {
      const { data } = await api("POST", `/stations/${station.id}/secret`);
      replace(secretBox, secretPanel(`New secret for ${station.stationCode}`, data,
        "The old secret no longer works for new connections."));
      secretBox.scrollIntoView({ block: "start" });
    } catch (error) { replace(secretBox, errorBox(error)); }
  }

  async function setActive(active) {
    if (!active && !confirm(`Deactivate ${station.stationCode}? It is refused at its next connection.`)) return;
    try {
      station = (await api("PATCH", `/stations/${station.id}`, { body: { isActive: active } })).data;
      drawHead();
    } catch (error) { replace(secretBox, errorBox(error)); }
  }

  const loadLive = async () => {
    const [fresh, active] = await Promise.all([
      api("GET", `/stations/${station.id}`).then((r) => r.data),
      api("GET", `/stations/${station.id}/active-sessions`).then((r) => r.data.items)]);
    if (!current.alive) return;
    station = fresh;
    drawHead();
    replace(activeBox, active.length ? table(["Connector", "Id tag", "Started", "Energy so far", "Transaction"],
      active.map((s) => [String(s.connectorNumber), s.idTag, when(s.startedAt), kwh(s.energyWh),
        link(`#/sessions/${s.id}`, String(s.transactionId))])) : h("p", { class: "muted" }, "No active session."));
    panel.setTransaction(active[0]?.transactionId);
    status.ok();
  };

  async function loadConfiguration() {
    const { data } = await api("GET", `/stations/${station.id}/configuration`);
    if (!current.alive) return;
    replace(configBox, table(["Key", "Value", "Read-only", "From", "When"], data.items.map((k) => [
      k.key, h("td", { class: "wrap" }, k.value ?? "—"),
      k.readonly === null ? "—" : k.readonly ? "yes" : "no", k.source, when(k.updatedAt)]),
    { empty: "Nothing known yet: send GetConfiguration to read the charger's keys." }));
  }

  async function loadCommands() {
    const { data } = await api("GET", `/stations/${station.id}/commands`, { params: { limit: 20 } });
    if (!current.alive) return;
    replace(historyBox, table(["When", "Command", "By", "Outcome", "Answer"],
      data.items.map((c) => [when(c.createdAt), c.action, c.requestedBy,
        badge(c.status === "offline" ? "offline" : c.status, c.status === "offline" ? "offline-cmd" : c.status),
        h("td", { class: "wrap" }, answerSummary(c))]),
      { empty: "No commands sent yet." }));
  }

  const chosenRange = () => {
    if (period.value !== "custom") {
      const to = new Date();
      return [new Date(to.getTime() - Number(period.value) * 3600 * 1000), to];
    }
    const from = new Date(customFrom.value);
    const to = new Date(customTo.value);
    if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
      throw new Error("Choose a start and a later end.");
    }
    return [from, to];
  };

  const loadHistory = async () => {
    let from;
    let to;
    try {
      [from, to] = chosenRange();
    } catch (error) {
      replace(historyError, h("p", { class: "error" }, error.message));
      return;
    }
    replace(historyError);
    const range = { from: from.toISOString(), to: to.toISOString() };
    const bucket = bucketFor(from.getTime(), to.getTime());
    const [meters, uptime, events, faults, sessions] = await Promise.all([
      api("GET", `/stations/${station.id}/meter-values`, { params: { ...range, bucket, limit: 10000,
        measurand: "Power.Active.Import,Energy.Active.Import.Register" } }).then((r) => r.data.items),
      api("GET", `/stations/${station.id}/uptime`, { params: range }).then((r) => r.data),
      api("GET", `/stations/${station.id}/status-history`, { params: { ...range, limit: 500 } }).then((r) => r.data),
      api("GET", `/stations/${station.id}/faults`, { params: { ...range, limit: 50 } }).then((r) => r.data.items),
      api("GET", "/sessions", { params: { stationId: station.id, limit: 10 } }).then((r) => r.data.items)]);
    if (!current.alive) return;
    const series = meterSeries(meters);
    dropCharts();
    const span = [from.getTime() / 1000, to.getTime() / 1000];
    lineChart(powerChart, { title: "Power", unit: "kW", series: series.power, span, zero: true });
    lineChart(energyChart, { title: "Energy meter", unit: "kWh", series: series.energy, span });
    replace(uptimeBox,
      h("p", {}, uptime.ratio === null ? "Nothing observed in this period."
        : `Online ${(uptime.ratio * 100).toFixed(1)} % of the period: ${duration(uptime.onlineSeconds)} online, ${duration(uptime.offlineSeconds)} offline.`),
      timeline(uptime.from, uptime.to, uptime.observedTo, uptime.intervals, events.items),
      h("div", { class: "legend" }, h("span", {}, h("span", { class: "swatch online" }), "online"),
        h("span", {}, h("span", { class: "swatch faulted" }), "faulted"),
        h("span", {}, h("span", { class: "swatch unavailable" }), "unavailable"),
        h("span", {}, h("span", { class: "swatch offline" }), "offline"),
        h("span", {}, `${when(uptime.from)} → ${when(uptime.to)}`)));
    replace(eventsBox, table(["When", "Event", "Detail"], events.items.slice(-50).reverse().map((e) => [
      when(e.occurredAt), badge(e.event, e.event === "connected" ? "online" : e.event === "disconnected" || e.event === "timed_out" ? "offline" : e.event),
      h("td", { class: "wrap" }, [e.reason, e.errorCode && e.errorCode !== "NoError" ? e.errorCode : null, e.info].filter(Boolean).join(" · ") || "—")]),
    { empty: "No events in this period." }));
    replace(faultsBox, table(["When", "Connector", "Error", "Info"], faults.map((f) => [
      when(f.occurredAt), f.connectorNumber === 0 ? "station" : String(f.connectorNumber),
      badge(f.errorCode === "NoError" ? f.status : f.errorCode, "faulted"),
      h("td", { class: "wrap" }, [f.info, f.vendorErrorCode].filter(Boolean).join(" · ") || "—")]),
    { empty: "No faults in this period." }));
    replace(sessionsBox, sessionTable(sessions, { station: false }));
  };
  const showHistory = () => loadHistory().catch((error) => replace(historyError, errorBox(error)));
  period.addEventListener("change", () => {
    custom.hidden = period.value !== "custom";
    if (period.value === "custom") {
      if (!customFrom.value) {
        const [from, to] = [new Date(Date.now() - 86400000), new Date()];
        const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
        customFrom.value = local(from);
        customTo.value = local(to);
      }
      return;
    }
    showHistory();
  });
  custom.addEventListener("submit", (event) => { event.preventDefault(); showHistory(); });
  drawHead();
  current.onError = (error) => status.failed(error);
  await Promise.all([loadLive(), loadCommands(), loadHistory(), loadConfiguration()])
    .catch((e) => status.failed(e));
  current.every(POLL_MS, async () => { await loadLive(); await loadCommands(); });
  current.every(30000, async () => { if (period.value !== "custom") await loadHistory(); });
}

// ------------------------------------------------------------------ sessions

function sessionTable(sessions, { station = true } = {}) {
  return table(
    [...(station ? ["Station"] : []), "Connector", "Id tag", "Start", "Stop", ["Energy", "num"], ["Duration", "num"], "Status"],
    sessions.map((s) => [
      ...(station ? [s.stationCode] : []), String(s.connectorNumber), s.idTag, when(s.startedAt),
      s.stoppedAt ? when(s.stoppedAt) : "charging", h("td", { class: "num" }, kwh(s.energyWh)),
      h("td", { class: "num" }, s.status === "active" ? duration((Date.now() - new Date(s.startedAt)) / 1000) : duration(s.durationSeconds)),
      badge(s.billingStatus === "review" ? "review" : s.status, s.billingStatus === "review" ? "review" : s.status)]),
    { empty: "No sessions.", onRow: (i) => { location.hash = `#/sessions/${sessions[i].id}`; } });
}

const CSV_COLUMNS = [["station", "stationCode"], ["connector", "connectorNumber"], ["idTag", "idTag"],
  ["start", "startedAt"], ["stop", "stoppedAt"], ["energyWh", "energyWh"], ["durationSeconds", "durationSeconds"],
  ["status", "status"], ["stopReason", "stopReason"], ["billingStatus", "billingStatus"], ["transactionId", "transactionId"],
  ["sessionId", "id"]];

async function sessionsPage(view, current) {
  const stations = await all("/stations");
  if (!current.alive) return;
  const form = h("form", { class: "fields", id: "session-filters" },
    h("label", {}, "Station", h("select", { name: "stationId" }, h("option", { value: "" }, "All stations"),
      stations.map((s) => h("option", { value: s.id }, s.stationCode)))),
    h("label", {}, "Id tag", h("input", { name: "idTag", maxlength: 20 })),
    h("label", {}, "State", h("select", { name: "active" }, h("option", { value: "" }, "Any"),
      h("option", { value: "true" }, "Charging now"), h("option", { value: "false" }, "Finished"))),
    h("label", {}, "Started from", h("input", { name: "from", type: "datetime-local" })),
    h("label", {}, "Started before", h("input", { name: "to", type: "datetime-local" })),
    h("div", { class: "row actions" }, h("button", { type: "submit" }, "Filter"),
      h("button", { type: "button", class: "secondary", id: "export-csv" }, "Export CSV")));
  const list = h("div", { id: "sessions-list" });
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Show more");
  const message = h("div");
  view.append(h("h1", {}, "Sessions"), h("section", { class: "card" }, form, message),
    h("section", { class: "card" }, list, more));
  const filters = () => ({
    stationId: form.elements.stationId.value, idTag: form.elements.idTag.value.trim(),
    active: form.elements.active.value, from: fromLocalInput(form.elements.from.value),
    to: fromLocalInput(form.elements.to.value),
  });
  let shown = [];
  let next = 0;
  const load = async (reset) => {
    replace(message);
    if (reset) { shown = []; next = 0; }
    try {
      const { data } = await api("GET", "/sessions", { params: { ...filters(), limit: 50, offset: next } });
      if (!current.alive) return;
      shown.push(...data.items);
      next = data.nextOffset;
      more.hidden = next === null;
      replace(list, h("p", { class: "muted small" }, `${plural(shown.length, "session")}${next === null ? "" : " (more below)"}`),
        sessionTable(shown));
    } catch (error) { replace(message, errorBox(error)); }
  };
  form.addEventListener("submit", (event) => { event.preventDefault(); load(true); });
  more.addEventListener("click", () => load(false));
  $("export-csv").addEventListener("click", async () => {
    replace(message, h("p", { class: "muted" }, "Preparing the CSV…"));
    try {
      const rows = await all("/sessions", filters(), 10000);
      const lines = [CSV_COLUMNS.map(([name]) => csvCell(name)).join(","),
        ...rows.map((s) => CSV_COLUMNS.map(([, key]) => csvCell(s[key])).join(","))];
      download(`sessions-${new Date().toISOString().slice(0, 10)}.csv`, `${lines.join("\r\n")}\r\n`, "text/csv");
      replace(message, h("p", { class: "notice", id: "csv-done" }, `Exported ${plural(rows.length, "session")}.`));
    } catch (error) { replace(message, errorBox(error)); }
  });
  await load(true);
}

async function sessionPage(view, current, sessionId) {
  let s = (await api("GET", `/sessions/${sessionId}`)).data;
  if (!current.alive) return;
  const facts = h("dl", { class: "facts", id: "session-facts" });
  const actions = h("div", { id: "session-actions" });
  const powerChart = h("div", { class: "chart", id: "session-power-chart" });
  const energyChart = h("div", { class: "chart", id: "session-energy-chart" });
  const status = updatedLine(s.status === "active" ? POLL_MS * 2 : 0);
  view.append(
    h("div", { class: "row spread" },
      h("h1", {}, `Session ${s.transactionId} at `, link(`#/stations/${s.stationId}`, s.stationCode)),
      status.el),
    h("section", { class: "card" }, facts, actions),
    h("section", { class: "card" }, h("h2", {}, "Power and energy"),
      h("div", { class: "grid two" }, powerChart, energyChart)));
  const drawFacts = () => {
    replace(facts,
      h("dt", {}, "Status"), h("dd", {}, badge(s.status), s.billingStatus === "review" ? ` for review: ${s.reviewReason}` : ""),
      h("dt", {}, "Connector"), h("dd", {}, String(s.connectorNumber)),
      h("dt", {}, "Id tag"), h("dd", {}, `${s.idTag} (${s.idTagStatus})`),
      h("dt", {}, "Started"), h("dd", {}, when(s.startedAt)),
      h("dt", {}, "Stopped"), h("dd", {}, s.stoppedAt ? `${when(s.stoppedAt)} (${s.stopReason || "no reason given"})` : "still charging"),
      h("dt", {}, "Energy"), h("dd", { id: "session-energy" }, `${kwh(s.energyWh)}${s.status === "active" ? " so far" : ""}`),
      h("dt", {}, "Duration"), h("dd", {}, s.status === "active"
        ? `${duration((Date.now() - new Date(s.startedAt)) / 1000)} so far` : duration(s.durationSeconds)),
      h("dt", {}, "Meter"), h("dd", {}, `${s.meterStartWh} Wh → ${s.meterStopWh ?? "…"} Wh`),
      h("dt", {}, "Billing"), h("dd", {}, s.billingStatus));
    // An operator closes a session whose StopTransaction never came (the charger is not told).
    replace(actions, s.status !== "active" ? null : h("button", {
      type: "button", class: "secondary", id: "close-session", onclick: async () => {
        const reason = prompt("Close this session without its StopTransaction (e.g. the charger "
          + "was replaced)? It is closed now for billing review; the charger is not told "
          + "(send RemoteStopTransaction for that). Reason:");
        if (!reason || !reason.trim()) return;
        try {
          s = (await api("POST", `/sessions/${s.id}/close`, { body: { reason: reason.trim() } })).data;
          drawFacts();
        } catch (error) { replace(actions, errorBox(error)); }
      } }, "Close this session…"));
  };
  const drawCharts = async () => {
    const start = new Date(s.startedAt).getTime();
    const end = s.stoppedAt ? new Date(s.stoppedAt).getTime() : Date.now();
    const { data } = await api("GET", `/sessions/${s.id}/meter-values`, { params: {
      bucket: bucketFor(start, end, 200), limit: 10000,
      measurand: "Power.Active.Import,Energy.Active.Import.Register" } });
    if (!current.alive) return;
    const series = meterSeries(data.items, s.meterStartWh);
    dropCharts();
    const span = [start / 1000, end / 1000];
    lineChart(powerChart, { title: "Power", unit: "kW", series: series.power, span, zero: true });
    lineChart(energyChart, { title: "Energy delivered", unit: "kWh", series: series.energy, span, zero: true });
    status.ok();
  };
  drawFacts();
  await drawCharts();
  if (s.status === "active") {
    current.onError = (error) => status.failed(error);
    current.every(POLL_MS * 2, async () => {
      s = (await api("GET", `/sessions/${s.id}`)).data;
      drawFacts();
      await drawCharts();
    });
  }
}

// ------------------------------------------------------------------ id tags

async function accountsForForms() {
  return me.role === "admin" ? all("/accounts") : [me.account || { id: me.accountId, name: "my account" }];
}

function accountSelect(accounts, name = "accountId") {
  return h("label", { hidden: me.role !== "admin" }, "Account",
    h("select", { name, required: me.role === "admin" },
      me.role === "admin" ? h("option", { value: "" }, "Choose an account…") : null,
      accounts.map((a) => h("option", { value: a.id }, a.name))));
}

async function idTagsPage(view, current) {
  const accounts = await accountsForForms();
  if (!current.alive) return;
  const names = new Map(accounts.map((a) => [a.id, a.name]));
  const message = h("div", { id: "id-tag-message" });
  const form = h("form", { class: "fields", id: "id-tag-form" },
    accountSelect(accounts),
    h("label", {}, "Id tag (RFID uid or token)", h("input", { name: "idTag", required: true, maxlength: 20 })),
    h("label", {}, "Label (who holds it)", h("input", { name: "label" })),
    h("label", {}, "Expires (optional)", h("input", { name: "expiresAt", type: "datetime-local" })),
    h("div", {}, h("button", { type: "submit" }, "Add id tag")));
  const list = h("div", { id: "id-tags-list" });
  view.append(h("h1", {}, "Id tags"),
    h("section", { class: "card" }, h("h2", {}, "Add an id tag"), form, message),
    h("section", { class: "card" }, h("h2", {}, "Id tags"), list));
  const load = async () => {
    const tags = await all("/id-tags");
    if (!current.alive) return;
    replace(list, table([...(me.role === "admin" ? ["Account"] : []), "Id tag", "Label", "Status", "Expires", ""],
      tags.map((t) => [...(me.role === "admin" ? [names.get(t.accountId) || t.accountId] : []),
        t.idTag, t.label || "—",
        t.status === "active" && t.expiresAt && new Date(t.expiresAt) < new Date()
          ? badge("expired", "blocked") : badge(t.status),
        t.expiresAt ? when(t.expiresAt) : "never",
        h("button", { type: "button", class: `small ${t.status === "active" ? "danger" : ""}`,
          dataset: { tag: t.idTag }, onclick: () => setStatus(t, t.status === "active" ? "blocked" : "active") },
        t.status === "active" ? "Block" : "Unblock")]),
      { empty: "No id tags yet." }));
  };
  const setStatus = async (tag, status) => {
    try {
      await api("PATCH", `/id-tags/${tag.id}`, { body: { status } });
      replace(message, h("p", { class: "notice" }, `${tag.idTag} is now ${status}.`));
      await load();
    } catch (error) { replace(message, errorBox(error)); }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { idTag: form.elements.idTag.value.trim() };
    if (me.role === "admin") body.accountId = form.elements.accountId.value;
    if (form.elements.label.value.trim()) body.label = form.elements.label.value.trim();
    if (form.elements.expiresAt.value) body.expiresAt = fromLocalInput(form.elements.expiresAt.value);
    try {
      const { data } = await api("POST", "/id-tags", { body });
      replace(message, h("p", { class: "notice" }, `Id tag ${data.idTag} added.`));
      form.elements.idTag.value = "";
      form.elements.label.value = "";
      await load();
    } catch (error) { replace(message, errorBox(error)); }
  });
  await load();
}

// ------------------------------------------------------------------ provisioning

async function provisionPage(view, current) {
  const accounts = await accountsForForms();
  const locations = await all("/locations");
  if (!current.alive) return;
  const result = h("div", { id: "provision-result" }, flash);
  flash = null;
  const sections = [];

  const busy = async (form, work) => {
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try { await work(); } catch (error) { replace(result, errorBox(error)); } finally { button.disabled = false; }
  };

  if (me.role === "admin") {
    const accountForm = h("form", { class: "fields", id: "account-form" },
      h("label", {}, "Name", h("input", { name: "name", required: true })),
      h("label", {}, "Company or tax number", h("input", { name: "document", required: true, maxlength: 64 })),
      h("div", {}, h("button", { type: "submit" }, "Create account")));
    accountForm.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(accountForm, async () => {
        const { data } = await api("POST", "/accounts", { body: {
          name: accountForm.elements.name.value.trim(), document: accountForm.elements.document.value.trim() } });
        flash = h("p", { class: "notice", id: "account-created" },
          `Account ${data.name} created. Now give it a location and stations.`);
        route();  // redraw with it in the lists (the notice survives the redraw)
      });
    });
    const keyForm = h("form", { class: "fields", id: "key-form" }, accountSelect(accounts),
      h("label", {}, "Key name (who uses it)", h("input", { name: "name" })),
      h("div", {}, h("button", { type: "submit" }, "Issue API key")));
    keyForm.addEventListener("submit", (event) => {
      event.preventDefault();
      busy(keyForm, async () => {
        const accountId = keyForm.elements.accountId.value;
        const name = keyForm.elements.name.value.trim();
        const { data } = await api("POST", `/accounts/${accountId}/api-keys`, { body: name ? { name } : {} });
        const input = h("input", { readonly: true, value: data.apiKey, id: "api-key-value", "aria-label": "API key" });
        const copy = h("button", { type: "button", class: "secondary small" }, "Copy");
        copy.addEventListener("click", () => copyText(input, copy));
        replace(result, h("section", { class: "card secret", id: "secret-panel" },
          h("h2", {}, "API key issued"),
          h("p", { class: "warning" }, "This key is shown only this once. Copy it now: it cannot be shown again, because only a hash of it is stored."),
          h("p", {}, "It signs in to this console and the REST API, and sees only its own account."),
          h("div", { class: "copy-line" }, input, copy)));
      });
    });
    sections.push(h("section", { class: "card" }, h("h2", {}, "New account"), accountForm),
      h("section", { class: "card" }, h("h2", {}, "API key for an account"), keyForm));
  }

  const locationForm = h("form", { class: "fields", id: "location-form" }, accountSelect(accounts),
    h("label", {}, "Name", h("input", { name: "name", required: true })),
    h("label", {}, "Address", h("input", { name: "address", required: true })),
    h("label", {}, "Latitude", h("input", { name: "latitude", type: "number", step: "any", min: -90, max: 90, required: true })),
    h("label", {}, "Longitude", h("input", { name: "longitude", type: "number", step: "any", min: -180, max: 180, required: true })),
    h("label", { class: "check" }, h("input", { name: "isPublic", type: "checkbox" }), "Public"),
    h("div", {}, h("button", { type: "submit" }, "Create location")));
  locationForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(locationForm, async () => {
      const f = locationForm.elements;
      const body = { name: f.name.value.trim(), address: f.address.value.trim(),
        latitude: Number(f.latitude.value), longitude: Number(f.longitude.value), isPublic: f.isPublic.checked };
      if (me.role === "admin") body.accountId = f.accountId.value;
      const { data } = await api("POST", "/locations", { body });
      locations.push(data);
      locationForm.reset();
      fillLocations();
      replace(result, h("p", { class: "notice", id: "location-created" }, `Location ${data.name} created.`));
    });
  });

  const stationLocation = h("select", { name: "locationId", required: true });
  const stationForm = h("form", { class: "fields", id: "station-form" }, accountSelect(accounts),
    h("label", {}, "Location", stationLocation),
    h("label", {}, "Station code (the charger's identity)", h("input", { name: "stationCode", required: true,
      maxlength: 48, pattern: "[A-Za-z0-9][A-Za-z0-9._\\-]{0,47}", title: "letters, digits, . _ -" })),
    h("label", {}, "Connectors", h("input", { name: "connectors", type: "number", min: 1, max: 64, value: "2", required: true })),
    h("label", {}, "Manufacturer", h("input", { name: "manufacturer", maxlength: 64 })),
    h("label", {}, "Model", h("input", { name: "model", maxlength: 64 })),
    h("label", {}, "Serial number", h("input", { name: "serialNumber", maxlength: 64 })),
    h("div", {}, h("button", { type: "submit" }, "Provision station")));
  const fillLocations = () => {
    const account = me.role === "admin" ? stationForm.elements.accountId.value : null;
    const choices = locations.filter((l) => !account || l.accountId === account);
    replace(stationLocation, choices.length ? null : h("option", { value: "" }, account || me.role !== "admin" ? "No location yet: create one" : "Choose an account first"),
      choices.map((l) => h("option", { value: l.id }, l.name)));
  };
  if (me.role === "admin") stationForm.elements.accountId.addEventListener("change", fillLocations);
  fillLocations();
  stationForm.addEventListener("submit", (event) => {
    event.preventDefault();
    busy(stationForm, async () => {
      const f = stationForm.elements;
      const body = { locationId: f.locationId.value, stationCode: f.stationCode.value.trim(),
        connectors: Number(f.connectors.value) };
      if (me.role === "admin") body.accountId = f.accountId.value;
      for (const name of ["manufacturer", "model", "serialNumber"]) if (f[name].value.trim()) body[name] = f[name].value.trim();
      const { data } = await api("POST", "/stations", { body });
      f.stationCode.value = "";
      replace(result, secretPanel(`Station ${data.station.stationCode} is provisioned`, data.provisioning),
        h("p", {}, link(`#/stations/${data.station.id}`, `Open ${data.station.stationCode}'s page`),
          " — it shows online as soon as the charger connects."));
      result.scrollIntoView({ block: "start" });
    });
  });

  view.append(h("h1", {}, "Provision"), result, ...sections,
    h("section", { class: "card" }, h("h2", {}, "New location"), locationForm),
    h("section", { class: "card" }, h("h2", {}, "New station"), stationForm));
  if (me.role === "admin") {
    view.append(h("section", { class: "card" }, h("h2", {}, "Accounts"),
      table(["Name", "Document", "Active", "Created"], accounts.map((a) => [a.name, a.document,
        a.isActive ? "yes" : "no", when(a.createdAt)]), { empty: "No accounts yet." })));
  }
}

// ------------------------------------------------------------------ start

$("sign-in-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("token");
  const token = input.value.trim();
  const button = event.target.querySelector("button");
  button.disabled = true;
  try {
    await signIn(token);
    input.value = "";
    showApp();
  } catch (error) {
    const text = error instanceof ApiError && error.status === 401
      ? "That token or API key is not accepted. Check it and try again."
      : plainWords(error);
    $("sign-in-error").textContent = text;
    $("sign-in-error").hidden = false;
  } finally {
    button.disabled = false;
  }
});

$("sign-out").addEventListener("click", () => signOut("You are signed out."));

async function start() {
  if (!session.token) { signOut("", { keepHash: true }); return; }
  try {
    const { data } = await api("GET", "/me");
    me = data;
    showApp();
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return;  // handled: signed out
    signOut(plainWords(error));
  }
}

start();
