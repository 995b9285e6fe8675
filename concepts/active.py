"""Active learning: which assets to label next, and how many positives a concept has.

`candidates(wh, name, n)`: unlabeled assets whose newest-version probability is
closest to the concept's threshold (the decision boundary; most uncertain).

`estimate(wh, name)`: the number of assets at or above the threshold (what
`WHERE <name> = 1` counts) and an estimate of the true number of positives with
a 95% interval.  Treating each calibrated probability p_i as an independent
Bernoulli, the positive count is Poisson-binomial: mean sum(p_i), variance
sum(p_i (1 - p_i)); the interval is the normal approximation, clipped to
[0, scored assets].  It is as good as the calibration, and narrows as labels
sharpen the head.
"""
from __future__ import annotations

import math

from .heads import ConceptError
from .registry import current_labels, get, materialize


def _ensure_scored(wh, name: str) -> None:
    if not wh.read_only:
        materialize(wh, [name])


def candidates(wh, name: str, n: int = 20, dataset: str | None = None) -> list[dict]:
    c = get(wh, name)
    if n < 1:
        raise ConceptError("n must be at least 1")
    _ensure_scored(wh, name)
    labeled = list(current_labels(wh.cursor(), name))
    sql = (f"SELECT coactive_image_id, dataset, path, {name}_latest_prob AS prob FROM coactive_table "
           f"WHERE {name}_latest_prob IS NOT NULL AND NOT list_contains(?, coactive_image_id)")
    args: list = [labeled]
    if dataset:
        sql += " AND dataset = ?"
        args.append(dataset)
    sql += " ORDER BY abs(prob - ?), coactive_image_id LIMIT ?"
    args += [c.threshold, int(n)]
    rows = wh.cursor().execute(sql, args).fetchall()
    return [
        {"coactive_image_id": r[0], "dataset": r[1], "path": r[2], "prob": r[3],
         "uncertainty": 1.0 - abs(r[3] - c.threshold) / max(c.threshold, 1.0 - c.threshold)}
        for r in rows
    ]


def estimate(wh, name: str, dataset: str | None = None) -> dict:
    c = get(wh, name)
    _ensure_scored(wh, name)
    p = f"{name}_latest_prob"
    sql = (f"SELECT count(*) FILTER (WHERE {p} IS NOT NULL), count(*) FILTER (WHERE {p} >= ?), "
           f"coalesce(sum({p}), 0), coalesce(sum({p} * (1 - {p})), 0), count(*) FROM coactive_table")
    args: list = [c.threshold]
    if dataset:
        sql += " WHERE dataset = ?"
        args.append(dataset)
    scored, above, mean, var, total = wh.cursor().execute(sql, args).fetchone()
    half = 1.96 * math.sqrt(var)
    return {
        "concept": name,
        "version": c.latest_version,
        "threshold": c.threshold,
        "assets": int(total),
        "scored": int(scored),
        "count": int(above),
        "fraction": (above / scored) if scored else 0.0,
        "expected_positives": float(mean),
        "ci95_low": max(0.0, float(mean) - half),
        "ci95_high": min(float(scored), float(mean) + half),
        "method": "poisson-binomial normal approximation over calibrated probabilities",
    }
