"""Default thresholds: where `<concept> = 1` starts, when the user has not said.

A concept's probability is rarely calibrated for the warehouse it runs on: ConSE's "mass on
the concept's classes" is small whenever the classifier is unsure, and a labelled head's
intercept encodes the label balance, not the warehouse's.  0.5 is therefore the wrong cut for
almost every concept (issue 15).  The default threshold of a new version is chosen in this
order, and the rule that chose it is stored with the version (`training.threshold_source`,
shown by `pixql concept show` and the API as `threshold_source`):

1. `user`: a threshold the user gave (`--threshold`, `pixql concept threshold`) is kept, also
   across retraining, until the user asks for `recalibrate`.
2. `labels: P pos / N neg, ...`: with at least `MIN_LABELS` positive and negative labels,
   the F1-optimal cut on the labels' cross-validated scores, never below the robust cut of 3.
3. `robust: median+3mad of N scores`: label-free.  The scores of the stored assets in
   log-odds; the threshold is median + 3 x 1.4826 x MAD (a robust z-score of 3).  Most assets
   are not the concept, so median and MAD describe the negatives whatever the (unknown)
   prevalence, up to about a third of the assets; a fixed quantile instead flags a fixed share
   of every warehouse.  Capped at 0.5: "more likely than not" always counts.
4. `default 0.5 (...)`: fewer than `MIN_SCORES` stored assets; `pixql concept recalibrate`
   once there are more.

The threshold is data of the version (`catalog.concept_versions.threshold`), so the SQL
macros and the stock DuckDB CLI see the same flag; a recalibration is a new version.
"""
from __future__ import annotations

import numpy as np

from warehouse import catalog
from warehouse.concept_cache import probabilities, read_vector_part

MIN_SCORES = 30
MAX_SCORES = 200_000  # the rule needs a sample, not every asset of a large warehouse
ROBUST_Z = 3.0
MIN_LABELS = 10
CAP = 0.5
FALLBACK = 0.5


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))


def robust_threshold(scores) -> float:
    """median + 3 MAD of the scores in log-odds, as a probability (capped at 0.5)."""
    s = np.asarray(scores, np.float64)
    s = s[np.isfinite(s)]
    L = _logit(s)
    med = float(np.median(L))
    mad = 1.4826 * float(np.median(np.abs(L - med)))
    if mad < 1e-9:  # over half the scores are one value: the cut is just above it
        above = s[s > np.median(s)]
        return float(min(CAP, above.min() if len(above) else CAP))
    return float(min(CAP, 1.0 / (1.0 + np.exp(-(med + ROBUST_Z * mad)))))


def f1_threshold(y, scores) -> float:
    """The score cut (flag = score >= cut) with the best F1 on labels `y`."""
    y = np.asarray(y, bool)
    s = np.asarray(scores, np.float64)
    order = np.argsort(-s)
    tp = np.cumsum(y[order])
    k = np.arange(1, len(s) + 1)
    f1 = 2 * tp / (k + y.sum())
    # Only cut between distinct scores; a tie takes the whole group.
    last = np.r_[s[order][1:] != s[order][:-1], True]
    best = int(np.argmax(np.where(last, f1, -1)))
    return float(s[order][best])


def stored_scores(con, root, head) -> np.ndarray:
    """The head's probabilities over (a sample of) the assets that have its encoder's vectors."""
    out, n = [], 0
    for part in catalog.part_paths(con, "vectors", encoder=head.encoder):
        _, X = read_vector_part(root, head.encoder, part, head.column, head.dim)
        if len(X):
            p = probabilities(X, [head.as_head()])[:, 0]
            out.append(p)
            n += len(p)
        if n >= MAX_SCORES:
            break
    return np.concatenate(out) if out else np.zeros(0)


def default_threshold(con, root, head, cv: tuple | None = None) -> tuple[float, str]:
    """(threshold, source) for a new version of `head`; `cv` = (labels, out-of-fold probabilities)."""
    scores = stored_scores(con, root, head)
    scores = scores[np.isfinite(scores)]
    robust = robust_threshold(scores) if len(scores) >= MIN_SCORES else None
    if cv is not None:
        y, p = np.asarray(cv[0], bool), np.asarray(cv[1], np.float64)
        if y.sum() >= MIN_LABELS and (~y).sum() >= MIN_LABELS:
            t = f1_threshold(y, p)
            src = f"labels: {int(y.sum())} pos / {int((~y).sum())} neg, F1-optimal (cross-validated)"
            if robust is not None and robust > t:
                return robust, src + f", raised to the robust cut over {len(scores)} scores"
            return t, src
    if robust is not None:
        return robust, f"robust: median+3mad of {len(scores)} scores"
    return FALLBACK, f"default 0.5 (only {len(scores)} stored scores, the rule needs {MIN_SCORES})"
