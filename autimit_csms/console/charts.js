// Charts: power and energy over time (uPlot, vendored), and the online/offline timeline.

import uPlot from "./vendor/uPlot.esm.js";
import { h, replace, when } from "./lib.js";

const COLORS = ["#0a6e5c", "#1d5fb4", "#b45309", "#7c3aed", "#be123c", "#0f766e"];

// Merge several [[unixSeconds, value], ...] series onto one x axis (uPlot's layout).
function align(series) {
  const xs = [...new Set(series.flatMap((s) => s.points.map(([t]) => t)))].sort((a, b) => a - b);
  const index = new Map(xs.map((t, i) => [t, i]));
  const columns = series.map((s) => {
    const column = new Array(xs.length).fill(null);
    for (const [t, v] of s.points) column[index.get(t)] = v;
    return column;
  });
  return [xs, ...columns];
}

const charts = new Set();
const observer = typeof ResizeObserver === "function" ? new ResizeObserver((entries) => {
  for (const entry of entries) {
    const chart = entry.target.chart;
    if (chart) chart.setSize({ width: Math.max(entry.contentRect.width, 200), height: 220 });
  }
}) : null;

export function dropCharts() {
  for (const chart of charts) chart.destroy();
  charts.clear();
  observer?.disconnect();
}

// A line chart of `series` ({label, points}) in `unit`, drawn into `container`.
// container.dataset.points says how many points were drawn (0: the empty message).
// `span`: [from, to] in unix seconds, the x range whatever the readings cover.
export function lineChart(container, { title, unit, series, span, stepped = false, zero = false }) {
  const drawn = series.filter((s) => s.points.length);
  const total = drawn.reduce((n, s) => n + s.points.length, 0);
  container.dataset.points = String(total);
  if (!total) {
    replace(container, h("p", { class: "chart-empty" }, `No ${title.toLowerCase()} readings in this period.`));
    return null;
  }
  replace(container);
  const width = Math.max(container.clientWidth || 600, 200);
  const options = {
    title, width, height: 220,
    scales: { x: span ? { time: true, range: () => span } : { time: true },
      y: zero ? { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.08 : 1] } : {} },
    axes: [{}, { label: unit, size: 60 }],
    series: [{ value: (u, v) => (v === null ? "—" : when(new Date(v * 1000).toISOString())) },
      ...drawn.map((s, i) => ({
        label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true,
        paths: stepped ? uPlot.paths.stepped({ align: 1 }) : undefined,
        value: (u, v) => (v === null ? "—" : `${v.toLocaleString(undefined, { maximumFractionDigits: 2 })} ${unit}`),
      }))],
    hooks: { draw: [() => { container.dataset.drawn = "true"; }] },
  };
  const chart = new uPlot(options, align(drawn), container);
  container.chart = chart;
  charts.add(chart);
  observer?.observe(container);
  return chart;
}

// The station's state over [from, to) as a bar: offline, online, and while online the
// station-level status it reported (StatusNotification of connector 0: faulted,
// unavailable), then the part of the period not observed yet.
const STATE_OF = { faulted: "faulted", unavailable: "unavailable" };

export function timeline(from, to, observedTo, intervals, statusEvents = []) {
  const start = new Date(from).getTime();
  const span = new Date(to).getTime() - start;
  const bar = h("div", { class: "timeline", role: "img",
                         "aria-label": "The station's state over the period" });
  const marks = statusEvents.filter((e) => e.kind === "status")
    .map((e) => [new Date(e.occurredAt).getTime(), STATE_OF[e.event] || "online"]);
  let cursor = start;
  const observedEnd = new Date(observedTo).getTime();
  const piece = (kind, a, b) => {
    if (b <= a) return;
    const seg = h("div", { class: `seg ${kind}`,
                           title: `${kind}: ${when(new Date(a).toISOString())} – ${when(new Date(b).toISOString())}` });
    seg.style.width = `${(100 * (b - a)) / span}%`;  // CSSOM, allowed by the CSP
    bar.append(seg);
  };
  let state = "online";
  let next = 0;
  for (const interval of intervals) {
    const a = new Date(interval.from).getTime();
    const b = new Date(interval.to).getTime();
    piece("offline", cursor, a);
    while (next < marks.length && marks[next][0] <= a) state = marks[next++][1];
    let at = a;
    while (next < marks.length && marks[next][0] < b) {
      piece(state, at, marks[next][0]);
      [at, state] = marks[next++];
    }
    piece(state, at, b);
    cursor = b;
  }
  piece("offline", cursor, observedEnd);
  piece("future", Math.max(cursor, observedEnd), start + span);
  return bar;
}

// Bucket seconds for about `points` points over [from, to).
export function bucketFor(fromMs, toMs, points = 240) {
  return Math.min(86400, Math.max(1, Math.ceil((toMs - fromMs) / 1000 / points)));
}

// Bucketed meter values -> chart series per connector: power in kW (avg), energy in kWh
// (last), less `energyBase` Wh (a session's meterStart: what it delivered).
export function meterSeries(items, energyBase = 0) {
  const power = new Map();
  const energy = new Map();
  for (const item of items) {
    const t = new Date(item.bucket).getTime() / 1000;
    if (item.measurand === "Power.Active.Import" && item.unit === "W" && item.phase === null) {
      if (!power.has(item.connectorNumber)) power.set(item.connectorNumber, []);
      power.get(item.connectorNumber).push([t, item.avg / 1000]);
    } else if (item.measurand === "Energy.Active.Import.Register" && item.unit === "Wh"
               && item.phase === null) {
      if (!energy.has(item.connectorNumber)) energy.set(item.connectorNumber, []);
      energy.get(item.connectorNumber).push([t, (item.last - energyBase) / 1000]);
    }
  }
  const named = (map) => [...map.entries()].sort(([a], [b]) => a - b).map(([connector, points]) => ({
    label: connector === 0 ? "main meter" : `connector ${connector}`, points,
  }));
  return { power: named(power), energy: named(energy) };
}
