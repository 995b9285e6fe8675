// Charts on every screen: Apache ECharts (vendored under /web/static/vendor/echarts, Apache-2.0), drawn on
// canvas; PNG export from the canvas, SVG export by drawing the same option once with the SVG renderer.
"use strict";

const PixQLCharts = (() => {
  const COLORS = ["#2f5bd3", "#c0392b", "#1f8a4c", "#b7791f", "#7b3fb8", "#1a9aa0", "#d35400", "#5d6d7e", "#c2185b",
    "#4e8a1f"];
  const STATUS_COLORS = { rejected: "#c0392b", review: "#b7791f", approved: "#1f8a4c", pending: "#8a94a3" };

  function draw(el, option) {
    const chart = echarts.getInstanceByDom(el) || echarts.init(el, null, { renderer: "canvas" });
    // aria: ECharts writes a text description of the data on the container, for screen readers.
    chart.setOption({ color: COLORS, aria: { enabled: true }, animationDuration: 300, ...option }, true);
    el.dataset.drawn = String(Number(el.dataset.drawn || 0) + 1);
    return chart;
  }

  window.addEventListener("resize", () => {
    for (const el of document.querySelectorAll("[_echarts_instance_]")) echarts.getInstanceByDom(el)?.resize();
  });

  function download(href, filename) {
    const a = document.createElement("a");
    a.href = href;
    a.download = filename;
    document.body.append(a);
    a.click();
    a.remove();
  }

  function exportPNG(chart, filename) {
    download(chart.getDataURL({ type: "png", pixelRatio: 2, backgroundColor: "#fff" }), filename);
  }

  function svgString(chart) {
    const box = document.createElement("div");
    box.style.cssText = "position:fixed;left:-10000px;top:0";
    document.body.append(box);
    const c = echarts.init(box, null, { renderer: "svg", width: chart.getWidth(), height: chart.getHeight() });
    try {
      c.setOption({ ...chart.getOption(), animation: false });
      return c.renderToSVGString();
    } finally {
      c.dispose();
      box.remove();
    }
  }

  function exportSVG(chart, filename) {
    const url = URL.createObjectURL(new Blob([svgString(chart)], { type: "image/svg+xml" }));
    download(url, filename);
    setTimeout(() => URL.revokeObjectURL(url), 10_000);
  }

  const today = () => new Date().toISOString().slice(0, 10);
  return { draw, exportPNG, exportSVG, svgString, COLORS, STATUS_COLORS, today };
})();
