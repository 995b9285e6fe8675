// Dashboard: GET /api/v1/insights/dashboard for a period and dataset, six charts, each clickable through
// to the assets behind a point (the SQL console for assets and concepts, the review queue for decisions).
"use strict";

(() => {
  const { api, el } = PixQL;
  const C = PixQLCharts;
  const $ = (id) => document.getElementById(id);
  let data = null;

  function params() {
    const p = { since: $("f-since").value, until: $("f-until").value, dataset: $("f-dataset").value };
    return Object.fromEntries(Object.entries(p).filter(([, v]) => v));
  }

  const go = (path, q) => { location.href = `${path}?${new URLSearchParams(q)}`; };
  const sqlConsole = (sql) => go("/web/sql", { q: sql, run: "1" });
  const drill = (kind, extra) => go("/web/queue", { drill: kind, since: data.since, until: data.until,
    ...(data.dataset ? { dataset: data.dataset } : {}), ...extra });

  const grid = { left: 44, right: 16, top: 34, bottom: 28, containLabel: true };
  const legend = { top: 0, type: "scroll" };
  const tooltip = { trigger: "item" };
  const dayAxis = (days) => ({ type: "category", data: days, axisLabel: { formatter: (d) => d.slice(5) } });
  const countAxis = { type: "value", minInterval: 1 };

  function stacked(series, kind, colors) {
    return series.map((s) => ({
      name: s.name, type: kind, stack: "total", data: s.data, emphasis: { focus: "series" },
      ...(kind === "line" ? { areaStyle: {}, symbolSize: 7 } : {}),
      ...(colors && colors[s.name] ? { itemStyle: { color: colors[s.name] } } : {}),
    }));
  }

  function summary(id, text) { $(id).textContent = text; }
  const sum = (totals) => Object.values(totals).reduce((a, b) => a + b, 0);

  function drawAll() {
    const ing = data.ingested;
    const c1 = C.draw($("chart-ingested"), {
      tooltip: { trigger: "axis" }, legend, grid, xAxis: dayAxis(ing.days), yAxis: countAxis,
      series: ing.series.map((s) => ({ name: s.name, type: "line", data: s.data, symbolSize: 8, triggerLineEvent: true })),
    });
    summary("sum-ingested", `${sum(ing.totals)} rows of coactive_table`);
    c1.on("click", (p) => sqlConsole(ing.drill.sql.replaceAll("{day}", ing.days[p.dataIndex])));

    const fl = data.flagged;
    const c2 = C.draw($("chart-flagged"), {
      tooltip, legend, grid, xAxis: dayAxis(fl.days), yAxis: countAxis, series: stacked(fl.series, "bar"),
    });
    summary("sum-flagged", `${sum(fl.totals)} category flags`);
    c2.on("click", (p) => drill("flagged", { day: fl.days[p.dataIndex], category: p.seriesName }));

    const q = data.queue;
    const c3 = C.draw($("chart-queue"), {
      tooltip, grid, xAxis: { type: "category", data: q.statuses.map((s) => s.status) }, yAxis: countAxis,
      series: [{ name: "subjects", type: "bar", barMaxWidth: 60, label: { show: true, position: "top" },
        data: q.statuses.map((s) => ({ value: s.count, itemStyle: { color: C.STATUS_COLORS[s.status] } })) }],
    });
    summary("sum-queue", `${q.total} assets and videos`);
    c3.on("click", (p) => go("/web/queue", { status: q.statuses[p.dataIndex].status,
      ...(data.dataset ? { dataset: data.dataset } : {}) }));

    const d = data.decisions;
    const c4 = C.draw($("chart-decisions"), {
      tooltip, legend, grid, xAxis: dayAxis(d.days), yAxis: countAxis,
      series: stacked(d.series, "bar", C.STATUS_COLORS),
    });
    summary("sum-decisions", Object.entries(d.totals).map(([k, v]) => `${v} ${k}`).join(", "));
    c4.on("click", (p) => drill("decided", { day: d.days[p.dataIndex], decision: p.seriesName }));

    const o = data.overturns.categories;
    const c5 = C.draw($("chart-overturns"), {
      tooltip: { trigger: "item", formatter: (p) => {
        const r = o[p.dataIndex];
        return `${r.category}: ${r.overturned} of ${r.model_decisions} model verdicts changed (${r.reviewed} reviewed)`;
      } },
      grid: { ...grid, left: 10 }, xAxis: { type: "value", min: 0, max: 1, axisLabel: { formatter: (v) => `${Math.round(v * 100)}%` } },
      yAxis: { type: "category", data: o.map((r) => r.category), inverse: true },
      series: [{ name: "overturn rate", type: "bar", barMaxWidth: 22,
        data: o.map((r) => r.rate ?? 0),
        label: { show: true, position: "right", formatter: (p) => `${o[p.dataIndex].overturned}/${o[p.dataIndex].model_decisions}` } }],
    });
    c5.on("click", (p) => drill("overturned", { category: o[p.dataIndex].category }));

    const cs = data.concepts;
    const c6 = C.draw($("chart-concepts"), {
      tooltip: { trigger: "item", formatter: (p) => {
        const e = cs[p.dataIndex];
        return `${e.concept} v${e.version}: ${e.count} at ≥ ${e.threshold}<br>expected ${e.expected_positives.toFixed(1)} ` +
          `(95% ${e.ci95_low.toFixed(1)}–${e.ci95_high.toFixed(1)}) of ${e.scored}`;
      } },
      legend: { top: 0, data: ["count at threshold", "95% interval"] }, grid,
      xAxis: { type: "category", data: cs.map((e) => e.concept), axisLabel: { interval: 0, rotate: cs.length > 6 ? 30 : 0 } },
      yAxis: countAxis,
      series: [
        { name: "count at threshold", type: "bar", barMaxWidth: 40, data: cs.map((e) => e.count) },
        { name: "95% interval", type: "custom", data: cs.map((e, i) => [i, e.ci95_low, e.ci95_high]),
          encode: { x: 0, y: [1, 2] },  // so the y axis takes in the whiskers, not only the bars
          itemStyle: { color: "#1d2430" }, z: 3,
          renderItem: (params, api) => {
            const lo = api.coord([api.value(0), api.value(1)]);
            const hi = api.coord([api.value(0), api.value(2)]);
            const w = 8;
            const style = { stroke: "#1d2430", lineWidth: 1.5 };
            return { type: "group", children: [
              { type: "line", shape: { x1: lo[0], y1: lo[1], x2: hi[0], y2: hi[1] }, style },
              { type: "line", shape: { x1: lo[0] - w, y1: lo[1], x2: lo[0] + w, y2: lo[1] }, style },
              { type: "line", shape: { x1: hi[0] - w, y1: hi[1], x2: hi[0] + w, y2: hi[1] }, style },
            ] };
          } },
      ],
    });
    c6.on("click", (p) => sqlConsole(cs[p.dataIndex].drill.sql));
  }

  async function load() {
    $("dash-error").hidden = true;
    const q = params();
    history.replaceState(null, "", `${location.pathname}?${new URLSearchParams(q)}`);
    try {
      data = await api("GET", `/api/v1/insights/dashboard?${new URLSearchParams(q)}`);
      $("f-since").value = data.since;
      $("f-until").value = data.until;
      drawAll();
      document.body.dataset.dashboard = "ready";
    } catch (e) {
      $("dash-error").textContent = e.message;
      $("dash-error").hidden = false;
    }
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!PixQL.token()) return;
    const url = new URLSearchParams(location.search);
    const datasets = await api("GET", "/api/v1/datasets?limit=10000").then((p) => p.data).catch(() => []);
    for (const d of datasets) $("f-dataset").append(el("option", { value: d.dataset_id }, d.dataset_id));
    for (const k of ["since", "until", "dataset"]) if (url.get(k)) $(`f-${k}`).value = url.get(k);
    $("dash-filters").addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
    load();
  });
})();
