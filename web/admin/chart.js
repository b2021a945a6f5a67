// Plain inline-SVG charts (no library): bars per bucket, lines over time
// (null values leave gaps), and horizontal bars for ranked counts. Charts are
// drawn at the container's real width (ResizeObserver), so text stays
// legible at 360 px, and each comes with its numbers as a table for screen
// readers and anyone who wants exact values.

import { h } from "../common/dom.js";

const NS = "http://www.w3.org/2000/svg";

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) el.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

const M = { top: 12, right: 12, bottom: 26, left: 44 };
const HEIGHT = 200;

/** A figure that re-draws `draw(width)` whenever its width changes. */
function responsive(title, draw, table, legend, tag) {
  const holder = h("div", { class: "chart-canvas" });
  const fig = h("figure", { class: "chart", "data-aicc": tag },
    h("figcaption", {}, title), holder, legend || null,
    table ? h("details", { class: "chart-data" }, h("summary", {}, table.summaryText), table.el) : null);
  let last = 0;
  const paint = (w) => {
    const width = Math.max(240, Math.floor(w));
    if (width === last) return;
    last = width;
    holder.replaceChildren(draw(width, title));
  };
  const ro = new ResizeObserver((entries) => paint(entries[0].contentRect.width));
  ro.observe(holder);
  paint(holder.clientWidth || 600);
  return fig;
}

function svgRoot(width, height, title) {
  const svg = s("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": title, class: "chart-svg" });
  svg.append(s("title", {}, title));
  return svg;
}

function yAxis(svg, width, y, ticks, format) {
  for (const v of ticks) {
    const yy = y(v);
    svg.append(s("line", { x1: M.left, x2: width - M.right, y1: yy, y2: yy, class: "grid" }));
    svg.append(s("text", { x: M.left - 6, y: yy + 4, "text-anchor": "end", class: "tick" }, format(v)));
  }
}

function xLabels(svg, labels, x, width) {
  const room = (width - M.left - M.right) / Math.max(1, labels.length);
  const every = Math.max(1, Math.ceil(56 / room));
  labels.forEach((l, i) => {
    if (i % every !== 0) return;
    svg.append(s("text", { x: x(i), y: HEIGHT - 8, "text-anchor": "middle", class: "tick" }, l));
  });
}

function niceMax(v) {
  if (v <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return v;
}

function dataTable(labels, series, format) {
  const el = h("table", { class: "compact" },
    h("thead", {}, h("tr", {}, h("th", { scope: "col" }, ""), series.map((se) => h("th", { scope: "col" }, se.name)))),
    h("tbody", {}, labels.map((l, i) => h("tr", {}, h("th", { scope: "row" }, l),
      series.map((se) => h("td", { class: "num" }, se.values[i] === null || se.values[i] === undefined ? "—" : format(se.values[i])))))));
  return el;
}

/** Vertical bars, one per label. */
export function barChart({ title, labels, values, format = String, tableLabel = "Data", tag }) {
  const draw = (width) => {
    const max = niceMax(Math.max(0, ...values.map((v) => v || 0)));
    const y = (v) => M.top + (HEIGHT - M.top - M.bottom) * (1 - v / max);
    const band = (width - M.left - M.right) / Math.max(1, labels.length);
    const x = (i) => M.left + band * (i + 0.5);
    const svg = svgRoot(width, HEIGHT, title);
    yAxis(svg, width, y, [0, max / 2, max], (v) => (Number.isInteger(v) ? format(v) : v.toFixed(1)));
    values.forEach((v, i) => {
      const bw = Math.max(1, band * 0.7);
      const top = y(v || 0);
      svg.append(s("rect", { x: x(i) - bw / 2, y: top, width: bw, height: Math.max(0, y(0) - top), class: "bar", rx: 2 },
        s("title", {}, `${labels[i]}: ${format(v || 0)}`)));
    });
    xLabels(svg, labels, x, width);
    return svg;
  };
  const table = { summaryText: tableLabel, el: dataTable(labels, [{ name: title, values }], format) };
  return responsive(title, draw, table, null, tag);
}

/** Lines over the same labels; `min`/`max` fix the y range (rates: 0..1). */
export function lineChart({ title, labels, series, min = 0, max, format = String, tableLabel = "Data", tag }) {
  const top = max ?? niceMax(Math.max(0, ...series.flatMap((se) => se.values.filter((v) => v !== null && v !== undefined))));
  const draw = (width) => {
    const y = (v) => M.top + (HEIGHT - M.top - M.bottom) * (1 - (v - min) / (top - min || 1));
    const step = (width - M.left - M.right) / Math.max(1, labels.length);
    const x = (i) => M.left + step * (i + 0.5);
    const svg = svgRoot(width, HEIGHT, title);
    yAxis(svg, width, y, [min, (min + top) / 2, top], format);
    series.forEach((se, si) => {
      // Consecutive known values form one path; a null breaks the line.
      let d = "";
      let open = false;
      se.values.forEach((v, i) => {
        if (v === null || v === undefined) {
          open = false;
          return;
        }
        d += `${open ? "L" : "M"}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
        open = true;
      });
      if (d) svg.append(s("path", { d: d.trim(), class: `line s${si}` }));
      se.values.forEach((v, i) => {
        if (v === null || v === undefined) return;
        svg.append(s("circle", { cx: x(i), cy: y(v), r: 3, class: `dot s${si}` }, s("title", {}, `${se.name} · ${labels[i]}: ${format(v)}`)));
      });
    });
    xLabels(svg, labels, x, width);
    return svg;
  };
  const legend = series.length > 1
    ? h("ul", { class: "legend" }, series.map((se, si) => h("li", {}, h("span", { class: `swatch s${si}`, "aria-hidden": "true" }), se.name)))
    : null;
  const table = { summaryText: tableLabel, el: dataTable(labels, series, format) };
  return responsive(title, draw, table, legend, tag);
}

/** Horizontal bars for ranked `[{name, count}]`. */
export function hbarChart({ title, items, tableLabel = "Data", tag }) {
  const rowH = 26;
  const height = Math.max(rowH, items.length * rowH) + 8;
  const draw = (width) => {
    const labelW = Math.min(180, width * 0.4);
    const max = Math.max(1, ...items.map((i) => i.count));
    const svg = svgRoot(width, height, title);
    items.forEach((it, i) => {
      const yy = 4 + i * rowH;
      const bw = ((width - labelW - 56) * it.count) / max;
      // Long names are cut to the label column (the full name is in the tooltip and the table).
      const room = Math.max(4, Math.floor((labelW - 8) / 6.5));
      const name = it.name.length > room ? `${it.name.slice(0, room - 1)}…` : it.name;
      svg.append(s("text", { x: labelW - 6, y: yy + 16, "text-anchor": "end", class: "tick label" }, name, s("title", {}, it.name)));
      svg.append(s("rect", { x: labelW, y: yy + 4, width: Math.max(1, bw), height: rowH - 10, class: "bar", rx: 2 }, s("title", {}, `${it.name}: ${it.count}`)));
      svg.append(s("text", { x: labelW + bw + 6, y: yy + 16, class: "tick" }, String(it.count)));
    });
    return svg;
  };
  const table = { summaryText: tableLabel, el: dataTable(items.map((i) => i.name), [{ name: title, values: items.map((i) => i.count) }], String) };
  return responsive(title, draw, table, null, tag);
}
