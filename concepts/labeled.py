"""Labeled (few-shot) heads: logistic regression on the stored vectors of labelled assets.

Features are standardised for the fit and the scaler is folded back into the
weights, so the stored head is still `sigmoid(x . w + b)` on the raw column.
When the concept also has prompts, the text head gives a *prior direction* d in
the same vector space (the encoder's `prior_direction`; CLIP's t+ - t- as is,
on ImageNet encoders the classifier rows weighted by the ConSE memberships)
and the projection x.d enters the fit as one extra, lightly penalised feature: with few labels the head leans on the
prompt, with many the labels win.  The result is again linear in x.
Probabilities are the logistic model's own (calibrated to the labelled class
balance, not the warehouse's: `concepts/calibrate.py` sets the default threshold);
cross-validated AUROC is recorded when there are enough labels, and the out-of-fold
probabilities go to the threshold rule.
"""
from __future__ import annotations

import numpy as np

from warehouse import catalog
from warehouse.concept_cache import read_vector_part

from .heads import ConceptError, HeadSpec, NotEnoughLabels, encoder_of

MIN_POSITIVE = 2
MIN_NEGATIVE = 2
PRIOR_GAIN = 3.0  # the prior feature is scaled up, so its coefficient costs 1/9 of the L2 penalty
C = 0.1  # strong L2: few labels in 1280 dims would otherwise saturate the probabilities


def vectors_for(con, root, encoder: str, column: str, dim: int, ids: list[str]) -> np.ndarray:
    """Stored vectors of `ids` (in that order); an asset without one is an error."""
    if not ids:
        return np.zeros((0, dim), dtype=np.float32)
    rows = con.execute(
        "SELECT coactive_image_id, part FROM catalog.embeddings WHERE encoder = ? AND list_contains(?, coactive_image_id)",
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
        out[ks] = np.asarray(X)[[index[ids[k]] for k in ks]]
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


def fit(X: np.ndarray, y: np.ndarray, d: np.ndarray | None, reference: np.ndarray | None = None,
        c: float | None = None) -> tuple[np.ndarray, float]:
    from sklearn.linear_model import LogisticRegression

    X = np.asarray(X, dtype=np.float64)
    ref = X if reference is None or len(reference) < 2 else np.vstack([np.asarray(reference, np.float64), X])
    mu, sd = ref.mean(axis=0), ref.std(axis=0)
    sd = np.where(sd < 1e-6, 1.0, sd)
    Z = (X - mu) / sd
    if d is not None:
        s = X @ d.astype(np.float64)
        s_ref = ref @ d.astype(np.float64)
        mu_s, sd_s = s_ref.mean(), max(s_ref.std(), 1e-6)
        Z = np.hstack([Z, (PRIOR_GAIN * (s - mu_s) / sd_s)[:, None]])
    model = LogisticRegression(C=c or C, max_iter=2000)
    model.fit(Z, y)
    coef, b = model.coef_[0], float(model.intercept_[0])
    w = coef[: X.shape[1]] / sd
    b -= float((coef[: X.shape[1]] * mu / sd).sum())
    if d is not None:
        g = coef[-1] * PRIOR_GAIN / sd_s
        w = w + g * d
        b -= g * mu_s
    return w.astype(np.float32), b


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
    w, b = fit(X, y, d, ref, c)
    head = HeadSpec("text+labeled" if d is not None else "labeled", encoder, column, w, 1.0, b, "logistic")
    train_scores = head.predict(X)
    training = {
        "method": "logistic-regression",
        "C": c or C,
        "positives": len(positive),
        "negatives": len(negative),
        "text_prior": d is not None,
        "train_auroc": _auc(y, train_scores),
        "train_accuracy": float(((train_scores >= 0.5) == y).mean()),
    }
    k = min(5, len(positive), len(negative))
    if k >= 3:
        from sklearn.model_selection import StratifiedKFold

        cv = np.zeros(len(y))
        for tr, te in StratifiedKFold(k, shuffle=True, random_state=0).split(X, y):
            w_k, b_k = fit(X[tr], y[tr], d, ref, c)
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
