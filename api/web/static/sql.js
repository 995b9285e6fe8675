// SQL console: submit through the query API, poll its status, stop it, page the rows, show images.
"use strict";

(() => {
  const { api, el } = PixQL;
  const PAGE = 100;
  const $ = (id) => document.getElementById(id);
  let current = null;      // {query_id, columns, total}
  let offset = 0;
  let view = "grid";
  let pollToken = 0;       // a newer run cancels the older run's polling loop

  function setStatus(text, status) {
    const s = $("query-status");
    s.textContent = text;
    s.dataset.status = status || "";
  }

  function showError(message) {
    const box = $("query-error");
    box.textContent = message;
    box.hidden = !message;
  }

  function insert(text) {
    const ed = $("sql-editor");
    const [a, b] = [ed.selectionStart, ed.selectionEnd];
    ed.value = ed.value.slice(0, a) + text + ed.value.slice(b);
    ed.focus();
    ed.selectionStart = ed.selectionEnd = a + text.length;
  }

  async function loadSide() {
    try {
      const [tables, datasets] = await Promise.all([api("GET", "/api/v1/tables"), api("GET", "/api/v1/datasets?limit=10000").then((p) => p.data)]);
      const holder = $("tables");
      holder.replaceChildren();
      for (const t of tables) {
        holder.append(el("details", { open: t.name === "coactive_table" },
          el("summary", {}, el("code", {}, t.name), el("span", { class: "muted small" }, ` ${t.columns.length} columns`)),
          el("ul", { class: "columns" }, t.columns.map((c) =>
            el("li", {}, el("button", { type: "button", class: "link", onclick: () => insert(c.name) }, c.name),
              el("span", { class: "muted small" }, " " + c.type))))));
      }
      // A concept c shows up as the columns c, c_latest_prob and c_prob of coactive_table.
      const main = tables.find((t) => t.name === "coactive_table");
      const names = main ? main.columns.map((c) => c.name) : [];
      const concepts = names.filter((n) => n.endsWith("_latest_prob")).map((n) => n.slice(0, -"_latest_prob".length))
        .filter((c) => names.includes(c));
      const list = $("concept-columns");
      list.replaceChildren();
      if (!concepts.length) list.append(el("li", { class: "muted" }, "No concepts yet."));
      for (const c of concepts) {
        list.append(el("li", { dataset: { concept: c } },
          el("button", { type: "button", class: "link", onclick: () => insert(c) }, c), " ",
          el("button", { type: "button", class: "link small", onclick: () => insert(`${c}_latest_prob`) }, "_latest_prob"), " ",
          el("a", { class: "small", href: `/web/concepts/${encodeURIComponent(c)}` }, "label")));
      }
      const sel = $("dataset");
      for (const d of datasets) sel.append(el("option", { value: d.dataset_id }, `${d.dataset_id} (${d.asset_count})`));
    } catch (e) {
      $("tables").replaceChildren(el("p", { class: "error" }, e.message));
    }
  }

  async function run() {
    const sql = $("sql-editor").value.trim();
    if (!sql) return;
    const mine = ++pollToken;
    showError("");
    $("results").hidden = true;
    setStatus("Submitting…", "Submitting");
    $("run").disabled = true;
    let rec;
    try {
      rec = await api("POST", "/api/v1/queries", { query: sql, dataset_id: $("dataset").value || null });
    } catch (e) {
      // A sandbox refusal is a 400 with the reason and, where known, line and column.
      const b = e.body || {};
      const where = b.line ? ` (line ${b.line}${b.col ? `, column ${b.col}` : ""})` : "";
      showError(`${e.message}${where}`);
      setStatus(e.status === 400 ? "Rejected" : "Failed", "Rejected");
      $("run").disabled = false;
      return;
    }
    current = { query_id: rec.query_id };
    $("stop").disabled = false;
    const started = Date.now();
    while (mine === pollToken) {
      setStatus(`${rec.status} · ${((Date.now() - started) / 1000).toFixed(1)} s`, rec.status);
      if (["Complete", "Error", "Stopped"].includes(rec.status)) break;
      try {
        rec = await api("GET", `/api/v1/queries/${rec.query_id}?wait=1&limit=${PAGE}`);
      } catch (e) {
        showError(e.message);
        break;
      }
    }
    if (mine !== pollToken) return;
    $("stop").disabled = true;
    $("run").disabled = false;
    const secs = rec.start_dt && rec.end_dt ? ((new Date(rec.end_dt) - new Date(rec.start_dt)) / 1000).toFixed(2) + " s" : "";
    if (rec.status === "Complete") {
      setStatus(`Complete · ${rec.total_row_count} rows${secs ? " · " + secs : ""}`, "Complete");
      offset = 0;
      current.total = rec.total_row_count;
      render(rec.results);
    } else if (rec.status === "Error") {
      setStatus("Error", "Error");
      showError(rec.error || "the query failed");
    } else if (rec.status === "Stopped") {
      setStatus("Stopped", "Stopped");
      if (rec.error) showError(rec.error);
    }
  }

  async function stop() {
    if (!current) return;
    $("stop").disabled = true;
    setStatus("Stopping…", "Stopping");
    try {
      await api("POST", `/api/v1/queries/${current.query_id}/stop`);
    } catch (e) {
      if (e.status !== 409) showError(e.message);  // 409: it finished first; the poll shows how
    }
  }

  async function page(delta) {
    if (!current) return;
    const next = Math.max(0, offset + delta * PAGE);
    try {
      const rec = await api("GET", `/api/v1/queries/${current.query_id}?offset=${next}&limit=${PAGE}`);
      offset = next;
      render(rec.results);
    } catch (e) {
      showError(e.message);
    }
  }

  function cell(v) {
    if (v === null || v === undefined) return el("span", { class: "null" }, "NULL");
    if (typeof v === "number") return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, "");
    if (typeof v === "object") return JSON.stringify(v);
    return String(v);
  }

  function render(results) {
    const cols = results.columns;
    const rows = results.data;
    $("results").hidden = false;
    $("row-count").textContent = `${current.total} rows`;
    $("page-info").textContent = rows.length ? `${offset + 1}–${offset + rows.length}` : "no rows";
    $("prev-page").disabled = offset === 0;
    $("next-page").disabled = results.next_offset === null || results.next_offset === undefined;

    const table = $("result-table");
    table.replaceChildren(
      el("thead", {}, el("tr", {}, el("th", {}, "#"), cols.map((c) => el("th", {}, c)))),
      el("tbody", {}, rows.map((r) => el("tr", {}, el("td", { class: "muted" }, r.row + 1),
        cols.map((c) => el("td", {}, cell(r.data[c])))))));

    // Rows that name an asset (by id, else by path) also show as an image grid.
    const key = cols.includes("coactive_image_id") ? "coactive_image_id" : cols.includes("path") ? "path" : null;
    const grid = $("result-grid");
    grid.replaceChildren();
    $("tab-grid").hidden = !key;
    if (key) {
      const extra = cols.filter((c) => c !== key && c !== "path" && c !== "coactive_image_id").slice(0, 3);
      for (const r of rows) {
        const v = r.data[key];
        const img = el("img", { alt: String(v ?? ""), loading: "lazy" });
        const vid = r.data.coactive_video_id;
        const card = el("figure", { class: "card", dataset: { row: r.row } }, img,
          el("figcaption", {},
            vid ? el("a", { class: "small timeline-link", href: `/web/videos/${encodeURIComponent(vid)}` }, "▶ video timeline") : null,
            key === "coactive_image_id" && v ? el("a", { class: "small similar-link", href: "#", title: "Order by cosine similarity to this image",
              onclick: (ev) => { ev.preventDefault(); similar(v); } }, "≈ similar images") : null,
            el("div", { class: "small ellipsis", title: r.data.path || v }, (r.data.path || String(v)).split("/").pop()),
            extra.map((c) => el("div", { class: "small muted ellipsis" }, `${c}: `, cell(r.data[c])))));
        grid.append(card);
        if (v === null || v === undefined) { img.src = PixQL.PLACEHOLDER; img.dataset.thumb = "missing"; continue; }
        if (key === "coactive_image_id") PixQL.assetThumb(img, v); else PixQL.pathThumb(img, v);
      }
    }
    current.columns = cols;
    setView(key || view !== "grid" ? view : "table");
  }

  // The SQL form of a similar-image search (macro `similarity_to_asset`, warehouse/similarity_sql.py).
  function similar(id) {
    const safe = String(id).replace(/'/g, "''");
    $("sql-editor").value = `SELECT coactive_image_id, path,\n  similarity_to_asset(coactive_image_id, '${safe}') AS similarity\n` +
      `FROM coactive_table\nORDER BY similarity DESC NULLS LAST\nLIMIT 24`;
    run();
  }

  function setView(v) {
    const hasGrid = !$("tab-grid").hidden;
    const shown = v === "grid" && !hasGrid ? "table" : v;
    $("result-grid").hidden = shown !== "grid";
    $("result-table").parentElement.hidden = shown !== "table";
    $("result-chart-view").hidden = shown !== "chart";
    for (const t of ["grid", "table", "chart"]) $(`tab-${t}`).classList.toggle("active", shown === t);
    if (shown === "chart" && current && current.columns) {
      SqlChart.show(current.query_id, current.columns, current.total).catch((e) => showError(e.message));
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    if (!PixQL.token()) return;
    $("run").addEventListener("click", run);
    $("stop").addEventListener("click", stop);
    $("prev-page").addEventListener("click", () => page(-1));
    $("next-page").addEventListener("click", () => page(1));
    for (const t of ["grid", "table", "chart"]) $(`tab-${t}`).addEventListener("click", () => { view = t; setView(t); });
    SqlChart.bind();
    $("sql-editor").addEventListener("keydown", (ev) => {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); run(); }
      if (ev.key === "Tab") { ev.preventDefault(); insert("  "); }
    });
    loadSide();
    // A dashboard click opens the console with the query behind the point: ?q=<sql>&run=1.
    const url = new URLSearchParams(location.search);
    if (url.get("q")) {
      $("sql-editor").value = url.get("q");
      if (url.get("view")) view = url.get("view");
      if (url.get("run") === "1") run();
    }
  });
})();
