"""What a concept head is before it is stored: a linear model over one vector column.

`HeadSpec` is the in-memory form of a `catalog.concept_versions` row.  Which
vector column a head reads depends on the encoder and the head kind:

| encoder          | text head        | labeled head  |
| ---------------- | ---------------- | ------------- |
| imagenet-lite0   | probs (ConSE)    | features      |
| clip:*           | embedding        | embedding     |
| anything else    | (no text side)   | its only vector column |
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from warehouse import catalog
from warehouse.concept_cache import Head, probabilities

LINKS = ("logistic", "linear")
KINDS = ("text", "labeled", "text+labeled", "model")


class ConceptError(ValueError):
    """Bad input about a concept; the message is meant for the user (HTTP 400)."""


class ConceptNotFound(ConceptError):
    """The named concept (or asset) does not exist (HTTP 404)."""


class NotEnoughLabels(ConceptError):
    """A labeled head was asked for with fewer labels than it needs."""


@dataclass
class HeadSpec:
    kind: str
    encoder: str
    column: str
    weights: np.ndarray
    scale: float = 1.0
    bias: float = 0.0
    link: str = "logistic"
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        self.weights = np.asarray(self.weights, dtype=np.float32).reshape(-1)
        if self.link not in LINKS:
            raise ConceptError(f"unknown link {self.link!r}: use one of {', '.join(LINKS)}")
        if self.kind not in KINDS:
            raise ConceptError(f"unknown head kind {self.kind!r}")
        if not np.all(np.isfinite(self.weights)) or not np.isfinite(self.scale) or not np.isfinite(self.bias):
            raise ConceptError("head weights, scale and bias must be finite numbers")

    @property
    def dim(self) -> int:
        return int(self.weights.shape[0])

    def as_head(self, concept: str = "", version: int = 0, threshold: float = 0.5) -> Head:
        return Head(concept, version, self.encoder, self.column, self.dim, self.weights,
                    float(self.scale), float(self.bias), self.link, threshold)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return probabilities(X, [self.as_head()])[:, 0]


def encoder_columns(con, encoder: str) -> dict[str, int]:
    cols = catalog.encoder_columns(con, encoder)
    if cols:
        return cols
    if encoder == "imagenet-lite0":
        return {"features": 1280, "probs": 1000}
    if encoder.startswith("clip:"):
        return {}  # known once the encoder has been used (its dimension depends on the model)
    raise ConceptError(f"unknown encoder {encoder!r}: no dataset in this warehouse uses it")


def labeled_column(con, encoder: str) -> str:
    if encoder == "imagenet-lite0":
        return "features"
    if encoder.startswith("clip:"):
        return "embedding"
    cols = encoder_columns(con, encoder)
    if len(cols) != 1:
        raise ConceptError(f"encoder {encoder!r} has vector columns {sorted(cols)}; cannot choose one")
    return next(iter(cols))
