"""ImageNet classifiers: the family `imagenet-lite0` belongs to (and `imagenet-lite2` would).

An ImageNet encoder stores `features` (pooled features) and `probs` (the 1000
class probabilities).  Its capabilities, shared by the family:

* text side: ConSE over `probs` (`encoders/conse.py`);
* labelled heads read `features`; a text head's prior in `features` is the
  classifier rows weighted by the (centred) ConSE memberships;
* built-in catalogue entries name ImageNet classes: the entry's probability is
  the sum of those classes' probabilities (a linear head over `probs`; under a
  softmax the classes are exclusive, so the sum is P(any of them));
* SQL columns: `<prefix>_top_class` and `<prefix>_top_prob` in `coactive_table_adv`.

A subclass sets `name`, `vector_columns`, `_load` (which sets `self.model`, a
timm classifier) and `_forward`; `sql_prefix` defaults to the name in snake case.
"""
from __future__ import annotations

import functools

import numpy as np

from . import conse
from .base import Encoder, linear_head

BUILTIN_SOURCE = "pixql built-in catalogue"


@functools.lru_cache(maxsize=1)
def _imagenet_class_names() -> tuple[str, ...]:
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_description(i) for i in range(1000))


def imagenet_class_names() -> list[str]:
    return list(_imagenet_class_names())


@functools.lru_cache(maxsize=1)
def imagenet_wnids() -> tuple[str, ...]:
    """The classes' WordNet ids (`n04086273` ...), in class order."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return tuple(info.index_to_label_name(i) for i in range(1000))


def class_indices(names: list[str], wanted) -> list[int]:
    """Indices of the class names `wanted` (exact ImageNet descriptions) in `names`."""
    index = {n: i for i, n in enumerate(names)}
    missing = [w for w in wanted if w not in index]
    if missing:
        raise ValueError(f"no ImageNet class named {missing[0]!r}")
    return [index[w] for w in wanted]


class ImagenetEncoder(Encoder):
    kind = "imagenet"
    text_column = "probs"
    labeled_column = "features"
    sql_prefix: str | None = None

    # `<name>:letterbox` / `<name>:both` is the same model with another `preprocess_mode`
    # (encoders/base.py); its vectors are stored under that name, its SQL columns get the suffix.
    @classmethod
    def handles(cls, name: str) -> bool:
        base, _, mode = name.partition(":")
        return base == cls.name and (not mode or mode in ("letterbox", "both"))

    def __init__(self, name: str | None = None):
        super().__init__(name)
        _, _, mode = self.name.partition(":")
        if mode:
            self.preprocess_mode = mode
            self.sql_prefix = f"{self.sql_prefix or type(self).name.replace('-', '_')}_{mode}"
            self.usage = f"{type(self).name}[:letterbox|:both]"

    @property
    def base_name(self) -> str:
        """The model without the preprocessing suffix (a preprocessing variant shares its heads)."""
        return self.name.partition(":")[0]

    @property
    def class_names(self) -> list[str]:
        return imagenet_class_names()

    def text_head(self, prompts, negatives, class_names=None) -> dict:
        names = list(class_names or self.class_names)
        # WordNet knows a class only by its id: the warehouse's names must be timm's, in order.
        wnids = list(imagenet_wnids()) if names == imagenet_class_names() else None
        w, mapped, how = conse.text_weights(prompts, negatives, names, wnids)
        return linear_head("probs", w, 1.0, 0.0, "linear",
                          {"method": "conse-minilm", "maps_to": mapped, "calibration": conse.CALIBRATION,
                           "class_text": how})

    def prior_direction(self, head_column, weights, column):
        if head_column != "probs" or column != "features":
            return None
        W = self.load().model.get_classifier().weight.detach().float().cpu().numpy()
        m = weights - weights.mean()
        return (m @ W).astype(np.float32)

    def builtin_head(self, entry, class_names=None):
        if not entry.imagenet:
            return None
        names = class_names or self.class_names
        idx = class_indices(names, entry.imagenet)
        w = np.zeros(len(names), dtype=np.float32)
        w[idx] = 1.0
        training = {"source": BUILTIN_SOURCE, "imagenet_classes": idx,
                    "maps_to": [{"class": names[i], "membership": 1.0} for i in idx]}
        return linear_head("probs", w, 1.0, 0.0, "linear", training), [], []

    def sql_columns(self):
        p = self.sql_prefix or self.name.replace("-", "_")
        probs = "{vectors}.probs::FLOAT[]"
        return [
            ("macro", f"CREATE OR REPLACE MACRO pixql_{p}_class(i) AS {{class_names}}[i]"),
            ("column", f"pixql_{p}_class(list_position({probs}, list_max({probs}))) AS {p}_top_class"),
            ("column", f"list_max({probs}) AS {p}_top_prob"),
        ]
