// Concept page, threshold tuning: GET /api/v1/insights/concepts/{name}/threshold draws the histogram of
// the concept's probabilities (counted in DuckDB) with a draggable threshold line and the labelled assets
// marked, and the precision-recall curve.  Dragging snaps to the 0.01 grid the response carries exact
// flagged counts for; precision and recall come from the labels.  "Save threshold" PATCHes the concept,
// which makes the next version.
"use strict";

const ConceptTune = (() => {
  const { api } = PixQL;
  const $ = (id) => document.getElementById(id);
  let name = null;
  let data = null;
  let t = null;          // the threshold on screen
  let hist = null;
  let pr = null;
  let onSaved = null;
  const GRID = { left: 50, right: 20, top: 40, bottom: 30 };

  const snap = (v) => Math.round(Math.min(1, Math.max(0, v)) * data.flagged_at.steps) / data.flagged_at.steps;
  const fmt = (v) => (v === null || v === undefined ? "–" : (v * 100).toFixed(1) + "%");

  function at(th) {
    const pos = data.labels.filter((l) => l.label === "positive");
    const tp = pos.filter((l) => l.prob >= th).length;
    const fp = data.labels.filter((l) => l.label === "negative" && l.prob >= th).length;
    return { tp, fp, positives: pos.length, precision: tp + fp ? tp / (tp + fp) : null,
      recall: pos.length ? tp / pos.length : null };
  }

  function flaggedAt(th) {
    const k = Math.round(th * data.flagged_at.steps);
    return data.flagged_at.counts[k];
  }

  function update(th, dragging = false) {
    t = snap(th);
    const m = at(t);
    $("tune-value").value = t.toFixed(2);
    $("tune-flagged").textContent = flaggedAt(t);
    $("tune-flagged").dataset.threshold = t.toFixed(2);
    $("tune-scored").textContent = `of ${data.scored} scored`;
    $("tune-precision").textContent = fmt(m.precision);
    $("tune-precision-n").textContent = `${m.tp} of ${m.tp + m.fp} labelled assets flagged are positives`;
    $("tune-recall").textContent = fmt(m.recall);
    $("tune-recall-n").textContent = `${m.tp} of ${m.positives} labelled positives flagged`;
    $("save-threshold").disabled = !PixQL.canWrite() || Math.abs(t - data.saved_threshold) < 1e-9;
    if (!dragging) placeLine();  // while dragging the line follows the mouse; it snaps on release
    if (pr) pr.setOption({ series: [{}, { id: "here", data: m.recall === null || m.precision === null ? [] : [[m.recall, m.precision]] }] });
  }

  // The threshold line is a draggable graphic over the histogram's grid, kept at x = t.
  function placeLine() {
    if (!hist) return;
    const [x] = hist.convertToPixel({ gridIndex: 0 }, [t, 0]);
    const top = GRID.top;
    const bottom = hist.getHeight() - GRID.bottom;
    hist.setOption({ graphic: [{ id: "threshold", type: "group", x, y: 0, draggable: "horizontal", cursor: "ew-resize",
      ondrag() {
        const v = hist.convertFromPixel({ gridIndex: 0 }, [this.x, 0])[0];
        update(v, true);
      },
      ondragend() { placeLine(); },
      children: [
        { type: "rect", shape: { x: -6, y: top, width: 12, height: bottom - top }, style: { fill: "rgba(192,57,43,0.08)" } },
        { type: "line", shape: { x1: 0, y1: top, x2: 0, y2: bottom }, style: { stroke: "#c0392b", lineWidth: 2 } },
        { type: "text", x: 4, y: top + 2, style: { text: `t = ${t.toFixed(2)}`, fill: "#c0392b", font: "12px sans-serif" } },
      ] }] });
  }

  function draw() {
    const h = data.histogram;
    const bins = h.counts.map((n, i) => [h.edges[i], h.edges[i + 1], n]);
    const pos = data.labels.filter((l) => l.label === "positive").map((l) => [l.prob, 0.9, l.coactive_image_id]);
    const neg = data.labels.filter((l) => l.label === "negative").map((l) => [l.prob, 0.75, l.coactive_image_id]);
    hist = PixQLCharts.draw($("tune-histogram"), {
      tooltip: { trigger: "item" }, legend: { top: 0, data: ["assets", "positive labels", "negative labels"] },
      grid: GRID,
      xAxis: { type: "value", min: 0, max: 1, name: "probability" },
      yAxis: [{ type: "value", minInterval: 1, name: "assets" }, { type: "value", min: 0, max: 1, show: false }],
      series: [
        { id: "bins", name: "assets", type: "custom", data: bins, encode: { x: [0, 1], y: 2 },
          tooltip: { formatter: (p) => `${p.value[0].toFixed(2)}–${p.value[1].toFixed(2)}: ${p.value[2]} assets` },
          renderItem: (params, a) => {
            const lo = a.coord([a.value(0), a.value(2)]);
            const hi = a.coord([a.value(1), 0]);
            return { type: "rect", shape: { x: lo[0] + 0.5, y: lo[1], width: Math.max(0.5, hi[0] - lo[0] - 1), height: hi[1] - lo[1] },
              style: { fill: "#2f5bd3" } };
          } },
        { id: "positive", name: "positive labels", type: "scatter", yAxisIndex: 1, symbol: "triangle", symbolSize: 11,
          itemStyle: { color: "#1f8a4c" }, data: pos, tooltip: { formatter: (p) => `positive ${p.value[2]}: p = ${p.value[0].toFixed(3)}` } },
        { id: "negative", name: "negative labels", type: "scatter", yAxisIndex: 1, symbol: "path://M0,0L10,10M10,0L0,10",
          symbolSize: 10, itemStyle: { color: "#c0392b", borderColor: "#c0392b", borderWidth: 2 }, data: neg,
          tooltip: { formatter: (p) => `negative ${p.value[2]}: p = ${p.value[0].toFixed(3)}` } },
      ],
    });
    const curve = data.pr_curve.filter((c) => c.precision !== null && c.recall !== null);
    pr = PixQLCharts.draw($("tune-pr"), {
      title: { text: `Precision-recall from ${data.labelled.positive} + / ${data.labelled.negative} − labels`,
        textStyle: { fontSize: 12, fontWeight: "normal" }, left: "center" },
      tooltip: { trigger: "item", formatter: (p) => p.seriesId === "curve"
        ? `t ≥ ${curve[p.dataIndex].threshold.toFixed(3)}: precision ${fmt(p.value[1])}, recall ${fmt(p.value[0])}`
        : `at t = ${t.toFixed(2)}: precision ${fmt(p.value[1])}, recall ${fmt(p.value[0])}` },
      grid: { left: 50, right: 20, top: 40, bottom: 36 },
      xAxis: { type: "value", min: 0, max: 1, name: "recall", nameLocation: "middle", nameGap: 24 },
      yAxis: { type: "value", min: 0, max: 1, name: "precision" },
      series: [
        { id: "curve", name: "precision-recall", type: "line", step: "end", symbolSize: 6, data: curve.map((c) => [c.recall, c.precision]) },
        { id: "here", name: "at the threshold", type: "scatter", symbolSize: 14, itemStyle: { color: "#c0392b" }, data: [] },
      ],
    });
    update(t);
  }

  async function load(conceptName) {
    name = conceptName;
    data = await api("GET", `/api/v1/insights/concepts/${encodeURIComponent(name)}/threshold`);
    t = data.threshold;
    draw();
    $("tuning").dataset.version = data.version;
  }

  async function saveThreshold() {
    const status = $("save-status");
    $("save-threshold").disabled = true;
    status.textContent = "Saving…";
    status.dataset.status = "Running";
    try {
      const c = await api("PATCH", `/api/v1/concepts/${encodeURIComponent(name)}`, { threshold: Number(t.toFixed(2)) });
      status.textContent = `Saved: version ${c.latest_version} at ${c.threshold}`;
      status.dataset.status = "Complete";
      if (onSaved) await onSaved();
    } catch (e) {
      status.textContent = e.message;
      status.dataset.status = "Error";
      $("save-threshold").disabled = false;
    }
  }

  function bind(afterSave) {
    onSaved = afterSave;
    $("save-threshold").addEventListener("click", saveThreshold);
    $("tune-value").addEventListener("change", (e) => { if (data) update(Number(e.target.value)); });
  }

  return { load, bind, current: () => t };
})();
