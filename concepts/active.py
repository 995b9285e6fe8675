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

from warehouse import catalog, readers  # reads of coactive_table on own cursors: readers while they run

from .heads import ConceptError
from .registry import current_labels, get, materialize


def _ensure_scored(wh, name: str) -> None:
    if not wh.read_only:
        materialize(wh, [name])


@readers.reading()
def candidates(wh, name: str, n: int = 20, dataset: str | None = None) -> list[dict]:
    c = get(wh, name)
    if n < 1:
        raise ConceptError("n must be at least 1")
    _ensure_scored(wh, name)
    labeled = list(current_labels(wh.cursor(), name))
    sql = (f"SELECT coactive_image_id, dataset, path, {name}_latest_prob AS prob FROM coactive_table "
           f"WHERE {name}_latest_prob IS NOT NULL AND NOT {catalog.in_list('coactive_image_id')}")
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


@readers.reading()
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


@readers.reading()
def prediction_estimate(wh, name: str, threshold: float | None = None, confidence_level: float = 0.95,
                        fidelity: int | None = None, dataset: str | None = None, bins: int = 10) -> dict:
    """How many assets fall in each probability range (Coactive's `prediction_estimation`).

    Ranges are `bins` equal steps of [0, 1] split at the threshold, so the ranges at or
    over it add up to what `WHERE <name> = 1` counts.  Every scored asset is read
    (exact counts, intervals of zero width) unless `fidelity` asks for a smaller
    random sample: then counts are scaled up and each gets a Wilson interval at
    `confidence_level`.
    """
    import numpy as np
    from statistics import NormalDist

    c = get(wh, name)
    t = c.threshold if threshold is None else float(threshold)
    if not 0.0 <= t <= 1.0:
        raise ConceptError("threshold must be in [0, 1]")
    if not 0.0 < confidence_level < 1.0:
        raise ConceptError("confidence_level must be between 0 and 1")
    if fidelity is not None and fidelity < 1:
        raise ConceptError("estimation_fidelity must be at least 1")
    _ensure_scored(wh, name)
    sql = f"SELECT {name}_latest_prob FROM coactive_table WHERE {name}_latest_prob IS NOT NULL"
    args: list = []
    if dataset:
        sql += " AND dataset = ?"
        args.append(dataset)
    p = np.array([r[0] for r in wh.cursor().execute(sql, args).fetchall()], dtype=np.float64)
    total = len(p)
    sample = p
    if fidelity is not None and fidelity < total:
        sample = np.random.default_rng(0).choice(p, size=fidelity, replace=False)
    edges = sorted(set(np.round(np.linspace(0.0, 1.0, bins + 1), 12).tolist()) | {t})
    idx = np.clip(np.searchsorted(edges, sample, side="right") - 1, 0, len(edges) - 2)
    counts = np.bincount(idx, minlength=len(edges) - 1)
    n = len(sample)
    z = NormalDist().inv_cdf(0.5 + confidence_level / 2)
    estimates, intervals = [], []
    for k in counts:
        if n == total:
            estimates.append(int(k))
            intervals.append([int(k), int(k)])
            continue
        f = k / n
        centre = (f + z * z / (2 * n)) / (1 + z * z / n)
        half = z * math.sqrt(f * (1 - f) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        estimates.append(int(round(f * total)))
        intervals.append([max(0, int(math.floor((centre - half) * total))),
                          min(total, int(math.ceil((centre + half) * total)))])
    return {"probability_ranges": [[float(a), float(b)] for a, b in zip(edges[:-1], edges[1:])],
            "estimates": estimates, "confidence_intervals": intervals, "threshold": t,
            "confidence_level": confidence_level, "sampled": n, "total": total}
