"""Encoders: models that turn decoded images into the vector columns a dataset stores.

`get_encoder(name)` returns a loaded, cached encoder:
  * `imagenet-lite0` (the embedded default, offline): see `imagenet_lite0.py`;
  * `clip:<model>:<pretrained>`: open_clip, see `clip.py`.
"""
from __future__ import annotations

import difflib
import functools
import threading
from pathlib import Path

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


def check_encoder_spec(name: str | None, allowed_roots=None) -> str:
    """The normalised encoder name, or a ValueError saying why it would not load.

    Cheap (reads no weights), so a request can be refused before it is accepted:
    the name is `imagenet-lite0` or `clip:<model>:<pretrained>`, whose model is an
    open_clip architecture and whose pretrained part is `none`, a tag open_clip
    knows for that model, or a checkpoint file or directory.  With `allowed_roots`
    (a server's `--path-root`s) a checkpoint must resolve inside one of them, or a
    PermissionError says so; that is checked before existence, so the answer tells
    nothing about files outside.
    """
    n = normalize_name(name)
    if n == DEFAULT_ENCODER:
        return n
    if not n.startswith("clip:"):
        raise ValueError(f"unknown encoder {n!r}: use 'imagenet-lite0' or 'clip:<model>:<pretrained>'")
    parts = n.split(":", 2)
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise ValueError(f"CLIP encoder must be 'clip:<model>:<pretrained>', got {n!r}")
    _, model, pretrained = parts
    import open_clip

    models = open_clip.list_models()
    if model not in models:
        near = difflib.get_close_matches(model, models, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else " (see open_clip.list_models())"
        raise ValueError(f"unknown CLIP model {model!r}{hint}")
    tags = open_clip.list_pretrained_tags_by_model(model)
    if pretrained in ("none", "None") or pretrained in tags:
        return n
    from .clip import WEIGHT_SUFFIXES

    p = Path(pretrained).expanduser()
    if allowed_roots:
        resolved = p.resolve()
        roots = [Path(r).resolve() for r in allowed_roots]
        if not any(resolved.is_relative_to(r) for r in roots):
            raise PermissionError(f"CLIP checkpoint {pretrained} is outside the directories this server reads")
    if p.is_file() or (p.is_dir() and any(f.suffix in WEIGHT_SUFFIXES for f in p.iterdir())):
        return n
    known = ", ".join(tags[:6]) + (", ..." if len(tags) > 6 else "") if tags else "none for this model"
    raise ValueError(f"{pretrained!r} is neither a pretrained tag of {model} ({known}) nor a checkpoint "
                     f"file or a directory holding one ({', '.join(WEIGHT_SUFFIXES)})")


def get_encoder(name: str | None = None) -> Encoder:
    with _lock:
        return _load(normalize_name(name))


__all__ = ["Encoder", "get_encoder", "check_encoder_spec", "DEFAULT_ENCODER", "normalize_name"]
