// Review queue: a grid of moderated assets with their triggering categories; approve/reject by click or key.
"use strict";

(() => {
  const { api, el } = PixQL;
  const $ = (id) => document.getElementById(id);
  const SHOWN_TAGS = 4;  // the most severe categories; the rest on hover
  let offset = 0;
  let nextOffset = null;
  let focus = 0;
  let generation = 0;   // a newer load supersedes an older one still in flight

  // A click on a dashboard chart opens the queue narrowed to the subjects behind that point.
  const DRILL_KEYS = ["drill", "since", "until", "day", "decision"];
  let drill = null;

  function filters() {
    const f = {
      status: $("f-status").value, dataset: $("f-dataset").value, category: $("f-category").value,
      policy: $("f-policy").value, limit: $("f-limit").value,
    };
    if (drill) Object.assign(f, drill);
    return Object.fromEntries(Object.entries(f).filter(([, v]) => v));
  }

  function describeDrill(d) {
    const what = { flagged: "flagged by the model", decided: `decided ${d.decision || ""}`, overturned: "overturned by a person" }[d.drill];
    const when = d.day ? ` on ${d.day}` : ` from ${d.since} to ${d.until}`;
    return `From the dashboard: assets and videos ${what}${d.category ? ` in ${d.category}` : ""}${when}`;
  }

  // Filters live in the URL, so a reload or a shared link shows the same page of the queue.
  function syncUrl() {
    const q = new URLSearchParams({ ...filters(), offset: String(offset) });
    history.replaceState(null, "", `${location.pathname}?${q}`);
  }

  function showError(msg) {
    $("queue-error").textContent = msg || "";
    $("queue-error").hidden = !msg;
  }

  function tag(c) {
    const cls = c.action === "reject" ? "tag" : "tag review";
    const parent = c.parent ? `${c.parent} › ` : "";
    const at = c.time !== undefined && c.time !== null ? ` @ ${PixQL.fmtTime(c.time * 1000)}` : "";
    return el("span", { class: cls, title: `threshold ${c.threshold}, ${c.action}${at}` },
      `${parent}${c.category} ${PixQL.fmtScore(c.score)}`);
  }

  function card(item, index) {
    const img = el("img", { alt: item.subject_id });
    const name = (item.path || item.subject_id).split("/").pop();
    const frame = item.subject_kind === "video"
      ? el("div", { class: "small", dataset: { frameTime: item.frame_time_s ?? "" } },
          item.frame_time_s !== null && item.frame_time_s !== undefined
            ? `▶ video · worst frame at ${PixQL.fmtTime(item.frame_time_s * 1000)}`
            : "▶ video · first frame", " · ",
          el("a", { href: `/web/videos/${encodeURIComponent(item.subject_id)}`, class: "timeline-link" }, "timeline"))
      : item.media_type === "keyframe" ? el("div", { class: "small muted" }, `keyframe at ${PixQL.fmtTime(item.frame_time_s * 1000)}`) : null;
    const statusTag = el("span", { class: `tag ${item.status === "approved" ? "ok" : item.status === "review" ? "review" : ""}`,
      dataset: { status: item.status } }, item.status);
    const canWrite = PixQL.canWrite();
    const node = el("figure", { class: "card", tabindex: "-1", dataset: { id: item.subject_id, index } }, img,
      el("figcaption", {},
        el("div", { class: "small ellipsis", title: item.path || "" }, name),
        frame,
        el("div", { class: "small muted" }, statusTag, ` ${item.decided_by}${item.user ? " " + item.user : ""}`,
          item.policy ? ` · ${item.policy}${item.policy_version ? " v" + item.policy_version : ""}` : ""),
        el("div", {}, item.categories.slice(0, SHOWN_TAGS).map(tag),
          item.categories.length > SHOWN_TAGS ? el("span", { class: "small muted",
            title: item.categories.slice(SHOWN_TAGS).map((c) => `${c.category} ${PixQL.fmtScore(c.score)}`).join("\n") },
            ` +${item.categories.length - SHOWN_TAGS} more`) : null,
          item.similar ? el("span", { class: "tag", title: `similarity ${item.similar.similarity}` },
            `like ${String(item.similar.similar_to).slice(0, 8)} (${item.similar.verdict})`) : null,
          !item.categories.length && !item.similar ? el("span", { class: "muted small" }, "no category triggered") : null),
        el("div", { class: "actions" },
          el("button", { type: "button", class: "approve", disabled: !canWrite, title: "Approve (a)",
            onclick: () => decide(index, "approved") }, "Approve"),
          el("button", { type: "button", class: "reject", disabled: !canWrite, title: "Reject (r)",
            onclick: () => decide(index, "rejected") }, "Reject"))));
    if (item.thumbnail_id) PixQL.assetThumb(img, item.thumbnail_id);
    else { img.src = PixQL.PLACEHOLDER; img.dataset.thumb = "missing"; }
    return node;
  }

  function cards() { return [...document.querySelectorAll("#queue figure.card")]; }

  function setFocus(i) {
    const all = cards();
    if (!all.length) return;
    focus = Math.max(0, Math.min(i, all.length - 1));
    all.forEach((c, j) => c.classList.toggle("focused", j === focus));
    all[focus].scrollIntoView({ block: "nearest" });
  }

  async function decide(index, status) {
    const node = cards()[index];
    if (!node || !PixQL.canWrite()) return;
    const id = node.dataset.id;
    showError("");
    try {
      const res = await api("PUT", `/api/v1/assets/${encodeURIComponent(id)}/moderation`, { status });
      const tagEl = node.querySelector("[data-status]");
      tagEl.textContent = res.status;
      tagEl.dataset.status = res.status;
      tagEl.className = `tag ${res.status === "approved" ? "ok" : res.status === "review" ? "review" : ""}`;
      node.classList.add("decided");
      node.dataset.decided = res.status;
      PixQL.toast(`${res.status}: ${node.querySelector(".ellipsis").textContent}`, "ok");
      setFocus(index + 1);
    } catch (e) {
      showError(e.message);
    }
  }

  async function load() {
    const mine = ++generation;
    showError("");
    syncUrl();
    try {
      const q = new URLSearchParams({ ...filters(), offset: String(offset) });
      const res = await api("GET", `/web/api/queue?${q}`);
      if (mine !== generation) return;
      nextOffset = res.next_offset;
      const grid = $("queue");
      grid.replaceChildren(...res.items.map(card));
      if (!res.items.length) grid.append(el("div", { class: "empty" }, `Nothing with status “${res.status || "any"}” here.`));
      $("page-info").textContent = res.total
        ? `${res.offset + 1}–${res.offset + res.items.length} of ${res.total}` : "0 items";
      $("prev-page").disabled = offset === 0;
      $("next-page").disabled = nextOffset === null;
      setFocus(0);
    } catch (e) {
      if (mine === generation) showError(e.message);
    }
  }

  function page(delta) {
    const limit = Number($("f-limit").value);
    if (delta > 0 && nextOffset === null) return;
    if (delta < 0 && offset === 0) return;
    offset = Math.max(0, offset + delta * limit);
    load();
  }

  async function fillFilters() {
    const params = new URLSearchParams(location.search);
    const [datasets, cats, pols] = await Promise.all([
      api("GET", "/api/v1/datasets?limit=10000").then((p) => p.data).catch(() => []),
      api("GET", "/api/v1/moderation/categories").catch(() => ({ categories: [] })),
      api("GET", "/api/v1/policies").catch(() => ({ policies: [] })),
    ]);
    for (const d of datasets) $("f-dataset").append(el("option", { value: d.dataset_id }, d.dataset_id));
    for (const c of cats.categories || []) {
      $("f-category").append(el("option", { value: c.category }, `${c.parent ? "  " : ""}${c.title || c.category}`));
    }
    for (const p of pols.policies || []) $("f-policy").append(el("option", { value: p.name }, p.name));
    for (const key of ["status", "dataset", "category", "policy", "limit"]) {
      const v = params.get(key);
      if (v !== null && [...$(`f-${key}`).options].some((o) => o.value === v)) $(`f-${key}`).value = v;
    }
    offset = Math.max(0, Number(params.get("offset")) || 0);
    if (params.get("drill")) {
      drill = Object.fromEntries(DRILL_KEYS.filter((k) => params.get(k)).map((k) => [k, params.get(k)]));
      if (params.get("category")) drill.category = params.get("category");
      $("drill-text").textContent = describeDrill(drill);
      $("drill-banner").hidden = false;
      $("f-status").value = "any";
      $("f-status").disabled = $("f-category").disabled = true;
    }
  }

  document.addEventListener("keydown", (ev) => {
    if (ev.target.closest("input, select, textarea") || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const keys = {
      ArrowRight: () => setFocus(focus + 1), j: () => setFocus(focus + 1),
      ArrowLeft: () => setFocus(focus - 1), k: () => setFocus(focus - 1),
      a: () => decide(focus, "approved"), r: () => decide(focus, "rejected"),
      n: () => page(1), p: () => page(-1),
    };
    const fn = keys[ev.key];
    if (fn) { ev.preventDefault(); fn(); }
  });

  document.addEventListener("DOMContentLoaded", async () => {
    if (!PixQL.token()) return;
    await fillFilters();
    for (const id of ["f-status", "f-dataset", "f-category", "f-policy", "f-limit"]) {
      $(id).addEventListener("change", () => { offset = 0; $(id).blur(); load(); });
    }
    $("prev-page").addEventListener("click", () => page(-1));
    $("next-page").addEventListener("click", () => page(1));
    load();
  });
})();
