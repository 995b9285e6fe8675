"""`ocr_text` and `ocr_confidence` from rapidocr (PP-OCR detection + recognition, ONNX, bundled).

Lines are joined with a space in reading order, so `ILIKE '%buy%'` and the
`ocr_flags` patterns (see warehouse/analyzer_sql.py) match across them.  An
image without text gets `ocr_text = ''` and a NULL confidence.
"""
from __future__ import annotations

import threading

import numpy as np
import pyarrow as pa

from .base import Analyzer, package_version


class OcrAnalyzer(Analyzer):
    name = "ocr"
    schema = pa.schema([pa.field("ocr_text", pa.string()), pa.field("ocr_confidence", pa.float32())])
    sql_types = {"ocr_text": "VARCHAR", "ocr_confidence": "FLOAT"}

    def __init__(self):
        from rapidocr import RapidOCR

        self.version = package_version("rapidocr")
        self.engine = RapidOCR(params={"Global.log_level": "error"})
        # The engine keeps per-call state in Python objects; two ingests in one
        # process (the HTTP server) take turns.
        self._lock = threading.Lock()

    def analyze(self, images):
        out = []
        for im in images:
            with self._lock:
                result = self.engine(np.asarray(im.convert("RGB")))
            texts = [t.strip() for t in (getattr(result, "txts", None) or ()) if t and t.strip()]
            scores = [float(s) for s in (getattr(result, "scores", None) or ())]
            out.append({
                "ocr_text": " ".join(texts),
                "ocr_confidence": float(np.mean(scores)) if texts and scores else None,
            })
        return out
