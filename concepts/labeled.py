"""Labeled (few-shot) heads: logistic regression on the stored vectors of labelled assets.

Features are centred by a population sample of the stored vectors and divided by ONE number,
the sample's mean per-dimension spread, for the fit; the scaler is folded back into the
weights, so the stored head is still `sigmoid(x . w + b)` on the raw column.  A single scale
keeps the penalty isotropic: per-dimension standardisation blows up the dimensions in which a
few labels happen to vary little, and measured 0.01-0.04 AUROC worse at 4 labels (issue 15).

When the concept also has prompts, the text head gives a direction d in the same vector space
(the encoder's `prior_direction`: CLIP's t+ - t- as is, on ImageNet encoders the classifier rows
weighted by the ConSE memberships), and the two are fused late:

    fused(x) = z_labels(x) + a * z_text(x),   a = min(1, 2 / sqrt(positives))

each z a z-score over the population sample, so neither side wins by its units; the text weight
is 1 at 4 positives and halves at 16 (measured on `debian-emoji-sprites-v1`: equal weights at 16
labels cost alcohol 0.035, the schedule keeps the labels' result).  The fused score is mapped back
onto the labelled head's logit scale over the population (same mean and spread), so its
probabilities stay as calibrated as the labelled head's.  The result is again ONE linear head
over the column.  Cross-validated AUROC is recorded when there are enough labels, and the
out-of-fold probabilities go to the threshold rule (`concepts/calibrate.py`).
"""
from __future__ import annotations

import numpy as np

from warehouse import catalog
from warehouse.concept_cache import read_vector_part

from .heads import ConceptError, HeadSpec, NotEnoughLabels, encoder_of

MIN_POSITIVE = 2
MIN_NEGATIVE = 2
C = 0.1  # strong L2: few labels in 1280 dims would otherwise saturate the probabilities


def vectors_for(con, root, encoder: str, column: str, dim: int, ids: list[str]) -> np.ndarray:
    """Stored vectors of `ids` (in that order); an asset without one is an error."""
    if not ids:
        return np.zeros((0, dim), dtype=np.float32)
    # A semi-join on the unnested ids: `list_contains(ids, id)` per row cost 2.7 s for the 2,048
    # population ids at 1M assets (issue 16), the join 0.16 s.
    rows = con.execute(
        "SELECT coactive_image_id, part FROM catalog.embeddings WHERE encoder = ? AND "
        + catalog.in_list("coactive_image_id"),
        [encoder, list(ids)],
    ).fetchall()
    where = dict(rows)
    missing = [i for i in ids if i not in where]
    if missing:
        raise ConceptError(f"{len(missing)} labelled asset(s) have no {encoder} vectors, e.g. {missing[0]}")
    out = np.zeros((len(ids), dim), dtype=np.float32)
    by_part: dict[str, list[int]] = {}
    for k, i in enumerate(ids):
        by_part.setdefault(where[i], []).append(k)
    for part, ks in by_part.items():
        pids, X = read_vector_part(root, encoder, part, column, dim)
        index = {v: n for n, v in enumerate(pids.to_pylist())}
        out[ks] = X[np.asarray([index[ids[k]] for k in ks])]  # only these rows of the mapped part
    return out


def prior_direction(prior: HeadSpec, column: str) -> np.ndarray | None:
    if prior is None:
        return None
    if prior.column == column:
        return prior.weights * np.float32(prior.scale)
    enc = encoder_of(prior.encoder)  # e.g. ImageNet: ConSE memberships through the classifier rows
    return enc.prior_direction(prior.column, prior.weights, column) if enc is not None else None


def _auc(y: np.ndarray, s: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < y.sum() < len(y) else None


POPULATION_SAMPLE = 2048


def population(con, root, encoder: str, column: str, dim: int) -> np.ndarray:
    """A random sample of the stored vectors: the scale the features are standardised by.

    Standardising by the few labelled vectors alone makes every dimension in
    which they happen to agree look enormous on any other asset, and the head
    then saturates to 0 or 1 far from its examples.
    """
    ids = [r[0] for r in con.execute(
        f"SELECT coactive_image_id FROM catalog.embeddings WHERE encoder = ? "
        f"USING SAMPLE reservoir({int(POPULATION_SAMPLE)} ROWS) REPEATABLE (7)",
        [encoder]).fetchall()]
    return vectors_for(con, root, encoder, column, dim, ids) if ids else np.zeros((0, dim), np.float32)


def text_weight(positives: int) -> float:
    return float(min(1.0, 2.0 / np.sqrt(max(positives, 1))))


def _scaler(X: np.ndarray, reference: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, float]:
    ref = X if reference is None or len(reference) < 2 else np.asarray(reference, np.float64)
    mu = ref.mean(axis=0)
    sd = float(ref.std(axis=0).mean())
    return ref, mu, sd if sd > 1e-9 else 1.0


def fit(X: np.ndarray, y: np.ndarray, d: np.ndarray | None, reference: np.ndarray | None = None,
        alpha: float | None = None, c: float | None = None) -> tuple[np.ndarray, float]:
    """(w, b) of the head `x . w + b` (log-odds); with a text direction `d`, the late fusion.

    `c` is the inverse L2 strength (default `C`); `alpha` the text weight (default `text_weight`)."""
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    ref, mu, sd = _scaler(X, reference)
    model = LogisticRegression(C=c or C, max_iter=2000)
    model.fit((X - mu) / sd, y)
    w = model.coef_[0] / sd
    b = float(model.intercept_[0]) - float((model.coef_[0] * mu).sum() / sd)
    if d is None:
        return w.astype(np.float32), b
    d = np.asarray(d, np.float64)
    a = text_weight(int(np.sum(y))) if alpha is None else alpha
    s_l, s_t = ref @ w + b, ref @ d
    m_l, sd_l = float(s_l.mean()), max(float(s_l.std()), 1e-9)
    m_t, sd_t = float(s_t.mean()), max(float(s_t.std()), 1e-9)
    # fused = (x.w + b - m_l)/sd_l + a (x.d - m_t)/sd_t, then back to the labelled logit scale.
    wf = w / sd_l + a * d / sd_t
    bf = (b - m_l) / sd_l - a * m_t / sd_t
    s_f = ref @ wf + bf
    g = sd_l / max(float(s_f.std()), 1e-9)
    wf, bf = g * wf, m_l + g * (bf - float(s_f.mean()))
    return wf.astype(np.float32), float(bf)


def labeled_head(con, root, encoder: str, column: str, dim: int, positive: list[str], negative: list[str],
                 prior: HeadSpec | None = None, regularization: float | None = None) -> HeadSpec:
    """`regularization` is Coactive's name for the L2 strength, 1/C of the fit (default 1/C = 10)."""
    c = 1.0 / regularization if regularization else None
    if len(positive) < MIN_POSITIVE or len(negative) < MIN_NEGATIVE:
        raise NotEnoughLabels(
            f"a labeled head needs at least {MIN_POSITIVE} positive and {MIN_NEGATIVE} negative examples "
            f"(have {len(positive)} positive, {len(negative)} negative)"
        )
    X = vectors_for(con, root, encoder, column, dim, list(positive) + list(negative))
    y = np.r_[np.ones(len(positive)), np.zeros(len(negative))].astype(int)
    d = prior_direction(prior, column)
    ref = population(con, root, encoder, column, dim)
    w, b = fit(X, y, d, ref, c=c)
    head = HeadSpec("text+labeled" if d is not None else "labeled", encoder, column, w, 1.0, b, "logistic")
    train_scores = head.predict(X)
    training = {
        "method": "logistic-regression" + (" + late fusion with the text head" if d is not None else ""),
        "C": c or C,
        "positives": len(positive),
        "negatives": len(negative),
        "text_prior": d is not None,
        "text_weight": text_weight(len(positive)) if d is not None else None,
        "feature_scale": "population mean, one scale (mean per-dimension spread)",
        "train_auroc": _auc(y, train_scores),
        "train_accuracy": float(((train_scores >= 0.5) == y).mean()),
    }
    k = min(5, len(positive), len(negative))
    if k >= 3:
        from sklearn.model_selection import StratifiedKFold

        cv = np.zeros(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=0).split(X, y):
            w_k, b_k = fit(X[tr], y[tr], d, ref, c=c)
            cv[te] = X[te] @ w_k + b_k
        training["cv_auroc"] = _auc(y, cv)
        training["cv_folds"] = k
        head.cv = (y.astype(bool), 1.0 / (1.0 + np.exp(-np.clip(cv, -50, 50))))
    head.training = training
    return head


def existing_encoder_dim(con, encoder: str, column: str) -> int:
    cols = catalog.encoder_columns(con, encoder)
    if column not in cols:
        raise ConceptError(f"no {encoder} vectors with a {column!r} column in this warehouse yet")
    return int(cols[column])
