// Video timeline: GET /api/v1/insights/videos/{id}/timeline, one line per top category over the keyframes'
// times, the worst frame marked, the keyframe strip below; a click on a point or a keyframe shows it.
"use strict";

(() => {
  const { api, el } = PixQL;
  const $ = (id) => document.getElementById(id);
  let data = null;

  function select(index) {
    const k = data.keyframes[index];
    for (const f of document.querySelectorAll("#keyframes figure")) f.classList.toggle("selected", Number(f.dataset.index) === index);
    $("frame-view").hidden = false;
    $("frame-view").dataset.keyframe = k.coactive_image_id;
    $("frame-view").dataset.index = index;
    $("frame-title").textContent = `Keyframe ${k.keyframe_index} at ${PixQL.fmtTime(k.time_ms)}` +
      (data.worst && data.worst.coactive_image_id === k.coactive_image_id ? " (worst frame)" : "");
    PixQL.assetThumb($("frame-img"), k.coactive_image_id, 512);
    $("frame-scores").replaceChildren(el("tr", {}, el("th", {}, "Category"), el("th", {}, "Score")),
      ...data.series.map((s) => el("tr", {}, el("td", {}, s.title), el("td", {}, PixQL.fmtScore(s.scores[index])))));
  }

  function draw() {
    const times = data.keyframes.map((k) => k.time_ms / 1000);
    const w = data.worst;
    const chart = PixQLCharts.draw($("timeline-chart"), {
      tooltip: { trigger: "axis", valueFormatter: (v) => PixQL.fmtScore(v) },
      legend: { top: 0 }, grid: { left: 50, right: 24, top: 34, bottom: 34 },
      xAxis: { type: "value", name: "seconds", nameLocation: "middle", nameGap: 24, min: 0,
        max: Math.max(data.duration_ms ? data.duration_ms / 1000 : 0, times[times.length - 1] || 0) },
      yAxis: { type: "value", min: 0, name: "score" },
      series: data.series.map((s, i) => ({
        name: s.title, id: s.category, type: "line", symbolSize: 8, triggerLineEvent: true,
        data: s.scores.map((v, j) => [times[j], v]),
        ...(i === 0 && w ? { markPoint: { symbol: "diamond", symbolSize: 18, itemStyle: { color: "#c0392b" },
          label: { show: true, position: "top", formatter: "worst", color: "#c0392b" },
          data: [{ name: "worst frame", coord: [w.time_ms / 1000, w.score], value: w.score }] } } : {}),
      })),
    });
    chart.on("click", (p) => {
      if (p.componentType === "markPoint") {
        select(data.keyframes.findIndex((k) => k.coactive_image_id === w.coactive_image_id));
      } else if (p.dataIndex !== undefined) {
        select(p.dataIndex);
      }
    });
  }

  function strip() {
    $("keyframes").replaceChildren(...data.keyframes.map((k, i) => {
      const img = el("img", { alt: k.coactive_image_id });
      const worst = data.worst && data.worst.coactive_image_id === k.coactive_image_id;
      const fig = el("figure", { class: worst ? "worst" : "", dataset: { index: i, keyframe: k.coactive_image_id },
        onclick: () => select(i) }, img, el("figcaption", {}, `${PixQL.fmtTime(k.time_ms)}${worst ? " · worst" : ""}`));
      PixQL.assetThumb(img, k.coactive_image_id, 160);
      return fig;
    }));
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!PixQL.token()) return;
    const id = $("video-root").dataset.video;
    try {
      data = await api("GET", `/api/v1/insights/videos/${encodeURIComponent(id)}/timeline`);
      $("video-name").textContent = (data.path || id).split("/").pop();
      $("video-facts").textContent = `${data.dataset} · ${data.keyframes.length} keyframes · ${PixQL.fmtTime(data.duration_ms)}` +
        (data.worst ? ` · worst: ${data.worst.category} ${PixQL.fmtScore(data.worst.score)} at ${PixQL.fmtTime(data.worst.time_ms)}` : "");
      draw();
      strip();
      if (data.worst) select(data.keyframes.findIndex((k) => k.coactive_image_id === data.worst.coactive_image_id));
      document.body.dataset.timeline = "ready";
    } catch (e) {
      $("video-error").textContent = e.message;
      $("video-error").hidden = false;
    }
  });
})();
