"""What a concept head is before it is stored: a linear model over one vector column.

`HeadSpec` is the in-memory form of a `catalog.concept_versions` row.  Which
vector column a head reads is the encoder's to say (`encoders/base.py`):
`text_column` for text heads, `labeled_column` (or the encoder's only vector
column) for labelled heads; `imagenet-lite0` reads `probs` / `features`,
`clip:*` reads `embedding` for both.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import encoders
from warehouse import catalog
from warehouse.errors import Invalid, NotFound
from warehouse.concept_cache import Head, probabilities

LINKS = ("logistic", "linear")
# "empty": a concept created with neither prompts nor labels (the Coactive SDK's `create`): it
# scores every asset ~0 until its first labelled version is trained.
KINDS = ("text", "labeled", "text+labeled", "model", "empty")


class ConceptError(Invalid):
    """Bad input about a concept; the message is meant for the user (HTTP 400)."""


class ConceptNotFound(ConceptError, NotFound):
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
    # (labels, out-of-fold probabilities) of a labelled head, for its default threshold; not stored.
    cv: tuple | None = field(default=None, repr=False, compare=False)

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


def encoder_of(encoder: str):
    """The encoder's capabilities (`encoders.find`), or None for a name no encoder handles."""
    try:
        return encoders.find(encoder)
    except ValueError as e:  # a malformed name, e.g. 'clip:' without a model
        raise ConceptError(str(e)) from None


def class_names(con, encoder: str) -> list[str] | None:
    """The class names ingest stored for `encoder` (None: the encoder's own, if any)."""
    rows = con.execute("SELECT name FROM catalog.class_names WHERE encoder = ? ORDER BY class_index",
                       [encoder]).fetchall()
    return [r[0] for r in rows] or None


def encoder_columns(con, encoder: str) -> dict[str, int]:
    cols = catalog.encoder_columns(con, encoder)
    if cols:
        return cols
    enc = encoder_of(encoder)
    if enc is None:
        raise ConceptError(f"unknown encoder {encoder!r}: no dataset in this warehouse uses it")
    return enc.known_columns()  # {} until the encoder has been used when its dimension depends on the model


def labeled_column(con, encoder: str) -> str:
    """The vector column a labelled head on `encoder` reads: the encoder says, else its only column."""
    enc = encoder_of(encoder)
    if enc is not None and enc.labeled_column:
        return enc.labeled_column
    cols = encoder_columns(con, encoder)
    if len(cols) != 1:
        raise ConceptError(f"encoder {encoder!r} has vector columns {sorted(cols)}; cannot choose one")
    return next(iter(cols))
