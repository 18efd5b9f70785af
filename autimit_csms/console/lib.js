// The console's plumbing: the REST client (token from sessionStorage only), API errors
// in plain words, and DOM building that never parses markup (text is always text).

const TOKEN_KEY = "autimit.console.token";

export const session = {
  get token() { return sessionStorage.getItem(TOKEN_KEY); },
  set token(value) { sessionStorage.setItem(TOKEN_KEY, value); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
};

// ------------------------------------------------------------------ the API

export class ApiError extends Error {
  constructor(status, code, message, field, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.field = field;
    this.body = body;
  }
}

let onUnauthorized = () => {};
export function whenUnauthorized(handler) { onUnauthorized = handler; }

function query(params) {
  const parts = [];
  for (const [name, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    parts.push(`${encodeURIComponent(name)}=${encodeURIComponent(value)}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

// Every call of the console goes through here: the token is sent as a header, never
// in a URL, and nothing about it is logged.
export async function api(method, path, { params, body, token, okStatuses } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = token || session.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`/api${path}${query(params)}`, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store", credentials: "omit", referrerPolicy: "no-referrer",
    });
  } catch {
    throw new ApiError(0, "network", "The server cannot be reached. Check the connection; "
      + "the console keeps trying.");
  }
  let data = null;
  try { data = await response.json(); } catch { data = null; }
  if (response.ok || (okStatuses && okStatuses.includes(response.status))) {
    return { status: response.status, data };
  }
  const error = (data && data.error) || {};
  const failure = new ApiError(response.status, error.code || "error", error.message || "",
    error.field, data);
  if (response.status === 401 && !token) onUnauthorized(failure);
  throw failure;
}

// Pages of a listing, followed through nextOffset (at most `max` items).
export async function all(path, params = {}, max = 5000) {
  const items = [];
  let offset = 0;
  while (offset !== null && items.length < max) {
    const { data } = await api("GET", path, { params: { ...params, limit: 500, offset } });
    items.push(...data.items);
    offset = data.nextOffset;
  }
  return items;
}

const FIELD_NAMES = {
  stationCode: "station code", locationId: "location", accountId: "account",
  connectors: "number of connectors", idTag: "id tag", expiresAt: "expiry",
  latitude: "latitude", longitude: "longitude", name: "name", document: "document",
  address: "address", from: "start of the period", to: "end of the period",
  connectorId: "connector", key: "key", value: "value", type: "type",
};

// What went wrong, for a person: never a stack, never raw JSON.
export function plainWords(error) {
  if (!(error instanceof ApiError)) {
    return "Something went wrong in the console. Reload the page and try again.";
  }
  const said = error.message ? ` (${error.message.replace(/^[^:]*: /, "")})` : "";
  switch (error.status) {
    case 0: return error.message;
    case 400: return "The server could not read that request. Reload the page and try again.";
    case 401: return "This token or API key is not accepted. Sign in again with a valid one.";
    case 403: return "Not allowed: this belongs to another account, or needs the admin token.";
    case 404: return error.code === "unknown_command"
      ? "The charger protocol has no such command."
      : "Not found. It may have been removed, or it belongs to no account you can see.";
    case 409:
      if (error.code === "station_offline") {
        return "The charger is offline: it is not connected, so nothing was sent.";
      }
      if (error.code === "duplicate_station_code") {
        return "A station with this code already exists (codes ignore letter case).";
      }
      if (error.code === "duplicate_id_tag") return "This account already has this id tag.";
      if (error.code === "session_closed") return "That session is already closed.";
      return `That conflicts with what is stored${said}.`;
    case 413: return "That is too large to send.";
    case 422: {
      const field = error.field ? FIELD_NAMES[error.field] || error.field : "";
      return field ? `Please check the ${field}${said}.` : `Please check the form${said}.`;
    }
    case 502: return "The charger answered with an error.";
    case 503: return "The database is unavailable just now. Try again in a moment.";
    case 504: return "No answer from the charger in time.";
    default: return `The server had a problem (HTTP ${error.status}). Try again in a moment.`;
  }
}

// ------------------------------------------------------------------ the DOM

// h("td", {class: "num"}, "text", child, ...): strings become text nodes.
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "value" || name === "checked" || name === "disabled"
             || name === "hidden" || name === "selected") el[name] = value;
    else el.setAttribute(name, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export function link(href, ...children) {
  return h("a", { href }, ...children);
}

export function badge(text, kind) {
  return h("span", { class: `badge ${kind || text || "unknown"}` }, text || "unknown");
}

export function table(headers, rows, { empty = "Nothing here yet.", onRow } = {}) {
  if (!rows.length) return h("p", { class: "muted" }, empty);
  return h("div", { class: "table-wrap" }, h("table", {},
    h("thead", {}, h("tr", {}, headers.map((text) => {
      const [label, cls] = Array.isArray(text) ? text : [text];
      return h("th", { class: cls }, label);
    }))),
    h("tbody", {}, rows.map((cells, index) => {
      const tr = h("tr", onRow ? { class: "link", onclick: () => onRow(index) } : {},
        cells.map((cell) => (cell instanceof Node && cell.tagName === "TD"
          ? cell : h("td", {}, cell))));
      return tr;
    }))));
}

export function errorBox(error) {
  return h("p", { class: "error", role: "alert" }, plainWords(error));
}

// ------------------------------------------------------------------ formatting

export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

export function ago(iso) {
  if (!iso) return "never";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 5) return "just now";
  if (seconds < 90) return `${seconds} s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 129600) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} days ago`;
}

export function kwh(wh) {
  if (wh === null || wh === undefined) return "—";
  return `${(wh / 1000).toLocaleString(undefined, { maximumFractionDigits: 2 })} kWh`;
}

export function duration(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.round(seconds);
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  if (hours) return `${hours} h ${minutes} min`;
  if (minutes) return `${minutes} min ${s % 60} s`;
  return `${s} s`;
}

export function localMidnight() {
  const d = new Date();
  d.setHours(0, 0, 0, 0);
  return d.toISOString();
}

// A value from a datetime-local input as an ISO timestamp with zone, or undefined.
export function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : undefined;
}

export function download(name, text, type) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const a = h("a", { href: url, download: name, hidden: true });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// One CSV cell: quoted, and a leading = + - @ defused so a spreadsheet shows it as text.
export function csvCell(value) {
  let text = value === null || value === undefined ? "" : String(value);
  if (/^[=+\-@\t\r]/.test(text) && !/^-?\d+(\.\d+)?$/.test(text)) text = `'${text}`;
  return `"${text.replace(/"/g, '""')}"`;
}

export async function copyText(input, button) {
  const text = input.value;
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    input.select();
    document.execCommand("copy");
  }
  const label = button.textContent;
  button.textContent = "Copied";
  setTimeout(() => { button.textContent = label; }, 1500);
}
