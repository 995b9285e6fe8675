// The concept list: every concept with its kind, version, threshold and label counts.
"use strict";

document.addEventListener("DOMContentLoaded", async () => {
  if (!PixQL.token()) return;
  const { api, el } = PixQL;
  const body = document.querySelector("#concept-list tbody");
  try {
    const res = await api("GET", "/api/v1/concepts");
    const concepts = Array.isArray(res) ? res : res.concepts || [];
    body.replaceChildren();
    if (!concepts.length) {
      body.append(el("tr", {}, el("td", { colspan: 6, class: "muted" },
        "No concepts yet: create one with `pixql concept create NAME --prompt ...` or `pixql concepts install-defaults`.")));
    }
    for (const c of concepts) {
      body.append(el("tr", { dataset: { concept: c.name } },
        el("td", {}, el("a", { href: `/web/concepts/${encodeURIComponent(c.name)}` }, c.name)),
        el("td", { class: "muted" }, c.description || ""),
        el("td", {}, c.kind || ""),
        el("td", {}, `v${c.latest_version}`),
        el("td", {}, PixQL.fmtScore(c.threshold)),
        el("td", {}, `${c.positive_labels ?? 0} / ${c.negative_labels ?? 0}`)));
    }
  } catch (e) {
    body.replaceChildren(el("tr", {}, el("td", { colspan: 6, class: "error" }, e.message)));
  }
});
