// Concept labelling: candidates and top-scoring assets, +/- labels, retrain, estimate before and after.
"use strict";

(() => {
  const { api, el } = PixQL;
  const $ = (id) => document.getElementById(id);
  const N = 12;
  let name = null;
  let concept = null;
  const labels = new Map(); // coactive_image_id -> 'positive' | 'negative': clicked, not yet sent
  let saved = new Map();    // the concept's stored labels

  const base = () => `/api/v1/concepts/${encodeURIComponent(name)}`;

  function showError(msg) {
    $("concept-error").textContent = msg || "";
    $("concept-error").hidden = !msg;
  }

  async function sql(query) {
    let rec = await api("POST", "/api/v1/queries", { query });
    while (!["Complete", "Error", "Stopped"].includes(rec.status)) {
      rec = await api("GET", `/api/v1/queries/${rec.query_id}?wait=2&limit=${N}`);
    }
    if (rec.status !== "Complete") throw new Error(rec.error || `query ${rec.status}`);
    return rec.results.data.map((r) => r.data);
  }

  function card(asset, what) {
    const id = asset.coactive_image_id;
    const img = el("img", { alt: id });
    const mark = labels.get(id) || saved.get(id);
    const button = (kind, text, title) => el("button", {
      type: "button", class: `${kind}${mark === kind ? " on" : ""}`, title,
      disabled: !PixQL.canWrite(), dataset: { label: kind },
      onclick: () => label(id, kind),
    }, text);
    const node = el("figure", { class: "card", dataset: { asset: id, list: what } }, img,
      el("figcaption", {},
        el("div", { class: "small ellipsis", title: asset.path }, (asset.path || id).split("/").pop()),
        el("div", { class: "small muted" }, `p = ${PixQL.fmtScore(asset.prob)}`),
        el("div", { class: "actions" }, button("positive", "+ yes", "Positive: an example of this concept"),
          button("negative", "− no", "Negative: not this concept"))));
    PixQL.assetThumb(img, id);
    return node;
  }

  // A click only marks the asset; "Retrain" sends every mark in one PATCH, which stores the labels
  // and trains one new version together (the API trains on every label change).
  function label(id, kind) {
    showError("");
    if (saved.get(id) === kind || labels.get(id) === kind) labels.delete(id);  // a second click undoes
    else labels.set(id, kind);
    const mark = labels.get(id) || saved.get(id);
    for (const fig of document.querySelectorAll(`figure[data-asset="${CSS.escape(id)}"]`)) {
      for (const b of fig.querySelectorAll("button[data-label]")) b.classList.toggle("on", b.dataset.label === mark);
      fig.dataset.pending = labels.has(id) ? labels.get(id) : "";
    }
    $("pending-count").textContent = labels.size;
    $("retrain").disabled = !PixQL.canWrite() || labels.size === 0;
  }

  async function retrain() {
    showError("");
    $("retrain").disabled = true;
    const status = $("train-status");
    status.textContent = "Training…";
    status.dataset.status = "Running";
    const before = $("concept-estimate").textContent;
    try {
      await api("PATCH", `${base()}/labels`, { labels: Object.fromEntries(labels) });
      labels.clear();
      $("concept-estimate-before").textContent = before;
      await load();
      status.textContent = `Trained version ${concept.latest_version}`;
      status.dataset.status = "Complete";
    } catch (e) {
      status.textContent = "Failed";
      status.dataset.status = "Error";
      showError(e.message);
    } finally {
      $("retrain").disabled = !PixQL.canWrite() || labels.size === 0;
    }
  }

  async function load() {
    concept = await api("GET", base());
    $("concept-description").textContent = concept.description || "";
    $("concept-version").textContent = `v${concept.latest_version}`;
    $("concept-kind").textContent = concept.kind || "–";
    $("concept-threshold").textContent = PixQL.fmtScore(concept.threshold);
    $("concept-labels").textContent = `${concept.positive_labels} / ${concept.negative_labels}`;
    $("pending-count").textContent = labels.size;

    ConceptTune.load(name, concept).catch((e) => showError(e.message));
    const [est, cands, top, versions, stored] = await Promise.all([
      api("GET", `${base()}/estimate`),
      api("GET", `${base()}/candidates?n=${N}`),
      // Concept names are SQL identifiers (the registry checks), so the column name is safe to splice.
      sql(`SELECT coactive_image_id, path, ${name}_latest_prob AS prob FROM coactive_table ` +
          `WHERE ${name}_latest_prob IS NOT NULL ORDER BY prob DESC, coactive_image_id LIMIT ${N}`),
      api("GET", `${base()}/versions`),
      api("GET", `${base()}/labels`),
    ]);
    saved = new Map(stored.map((l) => [l.coactive_image_id, l.label]));
    $("concept-estimate").textContent = est.count;
    $("concept-estimate").dataset.version = est.version;
    $("concept-estimate-ci").textContent =
      `expected ${est.expected_positives.toFixed(1)} (95% ${est.ci95_low.toFixed(1)}–${est.ci95_high.toFixed(1)}) of ${est.scored}`;

    const candList = Array.isArray(cands) ? cands : cands.candidates || [];
    $("candidates").replaceChildren(...candList.map((a) => card(a, "candidates")));
    if (!candList.length) $("candidates").append(el("p", { class: "muted" }, "Every asset is labelled."));
    $("top").replaceChildren(...top.map((a) => card(a, "top")));

    const vs = Array.isArray(versions) ? versions : versions.versions || [];
    $("versions").replaceChildren(
      el("tr", {}, el("th", {}, "Version"), el("th", {}, "Kind"), el("th", {}, "Threshold"),
        el("th", {}, "Training"), el("th", {}, "Created")),
      ...vs.slice().reverse().map((v) => el("tr", { dataset: { version: v.version } },
        el("td", {}, `v${v.version}`), el("td", {}, v.kind), el("td", {}, PixQL.fmtScore(v.threshold)),
        el("td", { class: "small muted" }, summary(v.training)), el("td", { class: "small" }, v.created_dt))));
  }

  function summary(t) {
    if (!t) return "";
    const parts = [];
    for (const k of ["positives", "negatives", "n_positive", "n_negative", "auc", "change"]) {
      if (t[k] !== undefined && t[k] !== null) parts.push(`${k} ${typeof t[k] === "number" ? +t[k].toFixed(3) : t[k]}`);
    }
    return parts.join(", ");
  }

  document.addEventListener("DOMContentLoaded", async () => {
    if (!PixQL.token()) return;
    name = $("concept-root").dataset.concept;
    $("retrain").disabled = true;
    $("retrain").addEventListener("click", retrain);
    ConceptTune.bind(() => load());
    window.addEventListener("beforeunload", (ev) => { if (labels.size) ev.preventDefault(); });
    try {
      await load();
    } catch (e) {
      showError(e.message);
    }
  });
})();
