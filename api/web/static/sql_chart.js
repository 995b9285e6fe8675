// SQL console, Chart view: the current result as a bar, line, scatter or histogram chart.
// It charts the first CHART_ROWS rows of the whole result (not the page on screen), so paging does not
// change it; the settings (type, x, y, bins) are kept in localStorage and reapplied to the next result
// wherever its columns allow, so they survive paging and rerunning.
"use strict";

const SqlChart = (() => {
  const { api } = PixQL;
  const $ = (id) => document.getElementById(id);
  const CHART_ROWS = 10000;
  const KEY = "pixql.sql.chart";
  let settings = load();
  let result = null;   // {query_id, columns, rows, total}
  let chart = null;

  function load() {
    try { return JSON.parse(localStorage.getItem(KEY) || "null") || {}; } catch { return {}; }
  }
  function save() { localStorage.setItem(KEY, JSON.stringify(settings)); }

  const isTime = (v) => typeof v === "string" && /^\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?/.test(v);
  const kinds = (cols, rows) => Object.fromEntries(cols.map((c) => {
    const vals = rows.map((r) => r[c]).filter((v) => v !== null && v !== undefined);
    if (!vals.length) return [c, "empty"];
    if (vals.every((v) => typeof v === "number")) return [c, "number"];
    if (vals.every(isTime)) return [c, "time"];
    return [c, "text"];
  }));

  // Defaults: a date/time column on x (else the first text column, else the first column);
  // the numeric columns other than x on y.
  function resolve(cols, kind) {
    const numeric = cols.filter((c) => kind[c] === "number");
    let x = cols.includes(settings.x) ? settings.x
      : cols.find((c) => kind[c] === "time") || cols.find((c) => kind[c] === "text") || cols[0];
    let y = (settings.y || []).filter((c) => numeric.includes(c) && c !== x);
    if (!y.length) y = numeric.filter((c) => c !== x).slice(0, 3);
    const type = settings.type || (kind[x] === "time" ? "line" : kind[x] === "number" ? "scatter" : "bar");
    return { type, x, y, bins: Math.min(200, Math.max(2, Number(settings.bins) || 20)) };
  }

  async function show(queryId, columns, total) {
    if (!result || result.query_id !== queryId) {
      const rec = await api("GET", `/api/v1/queries/${queryId}?offset=0&limit=${CHART_ROWS}`);
      result = { query_id: queryId, columns, total, rows: rec.results.data.map((r) => r.data) };
    }
    draw();
  }

  function fillControls(cols, kind, s) {
    const opt = (c, sel) => { const o = new Option(`${c} (${kind[c]})`, c, sel, sel); return o; };
    $("chart-type").value = s.type;
    $("chart-x").replaceChildren(...cols.map((c) => opt(c, c === s.x)));
    $("chart-y").replaceChildren(...cols.filter((c) => kind[c] === "number").map((c) => opt(c, s.y.includes(c))));
    $("chart-bins").value = s.bins;
    $("chart-bins-label").hidden = s.type !== "histogram";
    $("chart-x").disabled = s.type === "histogram";
  }

  function histogram(values, bins) {
    const lo = Math.min(...values);
    const hi = Math.max(...values);
    const width = hi > lo ? (hi - lo) / bins : 1;
    const counts = new Array(bins).fill(0);
    for (const v of values) counts[Math.min(bins - 1, Math.floor((v - lo) / width))]++;
    return { labels: counts.map((_, i) => `${+(lo + i * width).toPrecision(4)}–${+(lo + (i + 1) * width).toPrecision(4)}`), counts };
  }

  function draw() {
    const { columns: cols, rows, total } = result;
    const kind = kinds(cols, rows);
    const s = resolve(cols, kind);
    fillControls(cols, kind, s);
    const el = $("result-chart");
    $("chart-note").textContent = total > rows.length ? `first ${rows.length} of ${total} rows` : `${rows.length} rows`;
    el.dataset.type = s.type;
    el.dataset.x = s.x || "";
    el.dataset.y = s.y.join(",");
    if (!s.y.length) {
      chart = PixQLCharts.draw(el, { title: { text: "No numeric column to chart", left: "center", top: "middle" }, series: [] });
      return;
    }
    const base = { tooltip: { trigger: s.type === "scatter" ? "item" : "axis" }, legend: { top: 0, type: "scroll" },
      grid: { left: 50, right: 20, top: 34, bottom: 40, containLabel: true }, dataZoom: [{ type: "inside" }] };
    let option;
    if (s.type === "histogram") {
      const col = s.y[0];
      const h = histogram(rows.map((r) => r[col]).filter((v) => typeof v === "number"), s.bins);
      option = { ...base, xAxis: { type: "category", data: h.labels, name: col, nameLocation: "middle", nameGap: 26 }, yAxis: { type: "value", minInterval: 1 },
        series: [{ name: `${col} (count)`, type: "bar", data: h.counts, barCategoryGap: "4%" }] };
    } else {
      let ordered = rows;
      if (kind[s.x] === "time") ordered = rows.slice().sort((a, b) => String(a[s.x]).localeCompare(String(b[s.x])));
      const numericX = s.type === "scatter" && kind[s.x] === "number";
      option = { ...base,
        xAxis: numericX ? { type: "value", name: s.x, scale: true, nameLocation: "middle", nameGap: 26 }
          : { type: "category", name: s.x, nameLocation: "middle", nameGap: 26, data: ordered.map((r) => (r[s.x] === null ? "NULL" : String(r[s.x]))) },
        yAxis: { type: "value", scale: s.type === "scatter" },
        series: s.y.map((c) => ({ name: c, type: s.type, symbolSize: s.type === "scatter" ? 8 : 5,
          data: numericX ? ordered.map((r) => [r[s.x], r[c]]) : ordered.map((r) => r[c]) })) };
    }
    chart = PixQLCharts.draw(el, option);
  }

  function bind() {
    const update = (patch) => { Object.assign(settings, patch); save(); if (result) draw(); };
    $("chart-type").addEventListener("change", (e) => update({ type: e.target.value }));
    $("chart-x").addEventListener("change", (e) => update({ x: e.target.value }));
    $("chart-y").addEventListener("change", (e) => update({ y: [...e.target.selectedOptions].map((o) => o.value) }));
    $("chart-bins").addEventListener("change", (e) => update({ bins: Number(e.target.value) }));
    $("chart-png").addEventListener("click", () => chart && PixQLCharts.exportPNG(chart, "pixql-chart.png"));
    $("chart-svg").addEventListener("click", () => chart && PixQLCharts.exportSVG(chart, "pixql-chart.svg"));
  }

  const resize = () => chart && chart.resize();
  return { show, bind, resize, settings: () => settings };
})();
