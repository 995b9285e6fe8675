"""Encoders: the models that turn decoded images into the vector columns a dataset stores,
and everything the rest of PixQL needs to know about each of them.

Layers (imports go one way only, left to right):

    api -> concepts -> encoders        api -> ingest -> encoders
    concepts -> warehouse              ingest -> warehouse

`encoders` imports none of `api`, `concepts`, `ingest` or `warehouse`, so
`concepts` uses encoders without depending on ingest's pipeline (only
`concepts.classify` borrows ingest's file decoding); `warehouse` imports none
of the others.  What the warehouse needs from an encoder (its
vector columns, its SQL columns, its class names) reaches it as data: ingest
writes `catalog.encoders`, `catalog.encoder_sql` and `catalog.class_names`.

    lookup(name)       the encoder's capabilities, without loading weights (ValueError if unknown)
    find(name)         the same, or None for a name no encoder handles
    get_encoder(name)  the loaded encoder (weights read once, cached); None -> DEFAULT_ENCODER

Built in: `imagenet-lite0` (the embedded default, offline; `imagenet_lite0.py`,
family `imagenet.py`), the optional `imagenet-lite2` (extra `pixql[lite2]`;
`imagenet_lite2.py`) and `imagenet-lite0+lite2` (both side by side;
`imagenet_combo.py`), and `clip:<model>:<pretrained>` (open_clip, `clip.py`).

**Adding an encoder is one new file in this package**: a subclass of
`base.Encoder` (or of `imagenet.ImagenetEncoder` for another ImageNet
classifier) decorated with `@register`.  Every module here is imported on the
first lookup, so nothing else needs to change; `base.py` lists the
capabilities to fill in.
"""
from __future__ import annotations

import importlib
import pkgutil
import threading

DEFAULT_ENCODER = "imagenet-lite0"
_lock = threading.RLock()
_classes: list[type] = []
_instances: dict[str, object] = {}
_discovered = False


def register(cls: type) -> type:
    """Class decorator: make `cls` answer for the names its `handles` accepts."""
    with _lock:
        if cls not in _classes:
            _classes.append(cls)
    return cls


def unregister(cls: type) -> None:
    """Forget `cls` and its cached instances (tests that register a throwaway encoder)."""
    with _lock:
        if cls in _classes:
            _classes.remove(cls)
        for name in [n for n, e in _instances.items() if isinstance(e, cls)]:
            del _instances[name]


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    with _lock:
        if not _discovered:
            for m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
                importlib.import_module(f"{__name__}.{m.name}")
            _discovered = True


def normalize_name(name: str | None) -> str:
    return (name or DEFAULT_ENCODER).strip()


def find(name: str | None):
    """The (unloaded) encoder for `name`, or None when no registered encoder handles it."""
    name = normalize_name(name)
    _discover()
    with _lock:
        enc = _instances.get(name)
        if enc is None:
            cls = next((c for c in _classes if c.handles(name)), None)
            if cls is None:
                return None
            enc = _instances[name] = cls(name)  # cheap by contract: no weights yet
        return enc


def lookup(name: str | None):
    enc = find(name)
    if enc is None:
        usages = sorted((c.usage or c.name for c in _classes), key=lambda u: (u.split("[")[0] != DEFAULT_ENCODER, u))
        known = " or ".join(repr(u) for u in usages)
        raise ValueError(f"unknown encoder {normalize_name(name)!r}: use {known}")
    return enc


def check_encoder_spec(name: str | None, allowed_roots=None) -> str:
    """The normalised encoder name, or a ValueError saying why it would not load.

    Cheap (reads no weights), so a request can be refused before it is accepted.
    """
    enc = lookup(name)
    enc.check_spec(allowed_roots)
    return enc.name


def get_encoder(name: str | None = None):
    return lookup(name).load()


def __getattr__(attr: str):
    if attr == "Encoder":  # lazily: importing the package must not import torch
        from .base import Encoder

        return Encoder
    raise AttributeError(attr)


__all__ = ["Encoder", "DEFAULT_ENCODER", "register", "unregister", "find", "lookup", "get_encoder", "check_encoder_spec", "normalize_name"]
