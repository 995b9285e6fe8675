"""Encoders: models that turn decoded images into the vector columns a dataset stores.

`get_encoder(name)` returns a loaded, cached encoder:
  * `imagenet-lite0` (the embedded default, offline): see `imagenet_lite0.py`;
  * `clip:<model>:<pretrained>`: open_clip, see `clip.py`.
"""
from __future__ import annotations

import functools
import threading

from .base import Encoder

DEFAULT_ENCODER = "imagenet-lite0"
_lock = threading.Lock()


def normalize_name(name: str | None) -> str:
    return (name or DEFAULT_ENCODER).strip()


@functools.lru_cache(maxsize=4)
def _load(name: str) -> Encoder:
    if name == "imagenet-lite0":
        from .imagenet_lite0 import ImagenetLite0

        return ImagenetLite0()
    if name.startswith("clip:"):
        from .clip import ClipEncoder

        return ClipEncoder.from_name(name)
    raise ValueError(f"unknown encoder {name!r}: use 'imagenet-lite0' or 'clip:<model>:<pretrained>'")


def get_encoder(name: str | None = None) -> Encoder:
    with _lock:
        return _load(normalize_name(name))


__all__ = ["Encoder", "get_encoder", "DEFAULT_ENCODER", "normalize_name"]
