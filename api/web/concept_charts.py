"""Concept and video aggregates for the charts: top concepts, threshold tuning, a video's timeline.

`threshold(...)` is everything the tuning chart needs in one response, all of it
counted by DuckDB over `coactive_table`: the histogram of the concept's newest
probabilities, the exact number of assets at or over every threshold on a
1/`steps` grid (so the page can show the flagged count while the line is being
dragged without asking again), the labelled assets with their probabilities,
precision and recall at the chosen threshold, and the precision-recall curve.

`timeline(...)` scores a video's keyframes with the moderation heads
(`Moderator.scores`, the numbers moderation decides on) and keeps the top-level
categories that score highest anywhere in the video.
"""
from __future__ import annotations

from warehouse import readers  # each function reads the views on its own cursor: a reader while it does
from warehouse.errors import Invalid

STEPS = 100  # threshold grid for flagged counts: 0.00, 0.01, ... 1.00


@readers.reading()
def top_concepts(wh, dataset: str | None, limit: int) -> list[dict]:
    """Concepts by how many assets are at or over their threshold, with the estimate's 95% interval."""
    from concepts import active, registry
    from concepts.heads import ConceptError

    out = []
    for c in registry.list_concepts(wh):
        if c.latest_version < 1:
            continue  # nothing trained: no column to count
        try:
            est = active.estimate(wh, c.name, dataset=dataset)
        except (ConceptError, LookupError):
            continue
        where = f" AND dataset = '{dataset.replace(chr(39), chr(39) * 2)}'" if dataset else ""
        est["drill"] = {"sql": f"SELECT coactive_image_id, path, dataset, {c.name}_latest_prob FROM coactive_table\n"
                               f"WHERE {c.name}_latest_prob >= {c.threshold!r}{where}\n"
                               f"ORDER BY {c.name}_latest_prob DESC, coactive_image_id"}
        out.append(est)
    out.sort(key=lambda e: (-e["count"], e["concept"]))
    return out[:limit]


def _pr(tp: int, fp: int, positives: int) -> dict:
    return {"precision": tp / (tp + fp) if tp + fp else None, "recall": tp / positives if positives else None,
            "true_positives": tp, "false_positives": fp, "false_negatives": positives - tp}


@readers.reading()
def threshold(wh, name: str, at: float | None, bins: int, dataset: str | None) -> dict:
    from concepts import active, registry

    c = registry.get(wh, name)
    t = c.threshold if at is None else at
    if not 0.0 <= t <= 1.0:
        raise Invalid(f"threshold must be within [0, 1], got {t}")
    est = active.estimate(wh, name, dataset=dataset)  # also scores the newest version if it is not yet
    con = wh.cursor()
    p = f"{name}_latest_prob"  # a concept name is a checked SQL identifier
    where = f"{p} IS NOT NULL AND (CAST(? AS VARCHAR) IS NULL OR dataset = ?)"
    hist = dict(con.execute(
        f"SELECT least(CAST(floor({p} * ?) AS INTEGER), ? - 1), count(*) FROM coactive_table WHERE {where} GROUP BY 1",
        [bins, bins, dataset, dataset]).fetchall())
    grid = ", ".join(f"count(*) FILTER (WHERE {p} >= {k / STEPS!r})" for k in range(STEPS + 1))
    flagged_at = list(con.execute(f"SELECT {grid} FROM coactive_table WHERE {where}", [dataset, dataset]).fetchone())
    flagged = con.execute(f"SELECT count(*) FILTER (WHERE {p} >= ?), count(*) FROM coactive_table WHERE {where}",
                          [t, dataset, dataset]).fetchone()

    labels = registry.current_labels(con, name)
    rows = con.execute(
        f"SELECT coactive_image_id, path, {p} FROM coactive_table WHERE list_contains(?, coactive_image_id) "
        f"AND {where} ORDER BY {p} DESC", [list(labels), dataset, dataset]).fetchall()
    marked = [{"coactive_image_id": i, "path": path, "prob": float(prob), "label": labels[i]} for i, path, prob in rows]
    positives = sum(m["label"] == "positive" for m in marked)
    # The precision-recall curve: one point per distinct labelled probability taken as the threshold.
    curve = con.execute(
        """WITH l AS (SELECT unnest(?) AS p, unnest(?) AS pos), t AS (SELECT DISTINCT p AS t FROM l)
           SELECT t, count(*) FILTER (WHERE l.p >= t AND pos), count(*) FILTER (WHERE l.p >= t AND NOT pos)
           FROM t, l GROUP BY t ORDER BY t DESC""",
        [[m["prob"] for m in marked], [m["label"] == "positive" for m in marked]]).fetchall() if marked else []
    tp = sum(m["label"] == "positive" and m["prob"] >= t for m in marked)
    fp = sum(m["label"] == "negative" and m["prob"] >= t for m in marked)
    return {
        "concept": name, "version": c.latest_version, "saved_threshold": c.threshold, "threshold": t,
        "dataset": dataset, "scored": int(flagged[1]), "flagged": int(flagged[0]),
        "estimate": {k: est[k] for k in ("count", "expected_positives", "ci95_low", "ci95_high")},
        "histogram": {"bins": bins, "edges": [k / bins for k in range(bins + 1)],
                      "counts": [int(hist.get(k, 0)) for k in range(bins)]},
        "flagged_at": {"steps": STEPS, "thresholds": [k / STEPS for k in range(STEPS + 1)],
                       "counts": [int(n) for n in flagged_at]},
        "labels": marked,
        "labelled": {"positive": positives, "negative": len(marked) - positives},
        "at_threshold": _pr(tp, fp, positives),
        "pr_curve": [dict(_pr(int(a), int(b), positives), threshold=float(th)) for th, a, b in curve],
    }


@readers.reading()
def timeline(wh, video_id: str, top: int) -> dict:
    from concepts import taxonomy
    from concepts.moderation import Moderator
    from api.server.errors import NotFound

    from warehouse import catalog

    con = wh.cursor()
    video = catalog.video(con, video_id)
    if video is None:
        raise NotFound(f"no video {video_id!r}")
    frames = catalog.video_keyframes(con, video_id)
    scores = Moderator(wh).scores(con, [f[0] for f in frames]) if frames else {}
    peak: dict[str, float] = {}
    for s in scores.values():
        for cat in taxonomy.TOP_LEVEL:
            if s.get(cat) is not None:
                peak[cat] = max(peak.get(cat, 0.0), s[cat])
    chosen = sorted(peak, key=lambda c: (-peak[c], c))[:top]
    series = [{"category": cat, "title": taxonomy.CATEGORIES[cat].title,
               "scores": [scores.get(f[0], {}).get(cat) for f in frames]} for cat in chosen]
    worst = None
    if series:
        vals = series[0]["scores"]
        k = max((i for i, v in enumerate(vals) if v is not None), key=lambda i: vals[i], default=None)
        if k is not None:
            worst = {"category": chosen[0], "score": vals[k], "keyframe_index": frames[k][1],
                     "time_ms": frames[k][2], "coactive_image_id": frames[k][0]}
    return {
        "coactive_video_id": video_id, "path": video["path"], "dataset": video["dataset"],
        "duration_ms": video["duration_ms"],
        "keyframes": [{"coactive_image_id": f[0], "keyframe_index": f[1], "time_ms": f[2]} for f in frames],
        "series": series, "worst": worst,
    }
