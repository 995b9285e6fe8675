"""`nudity_labels`: exposed/covered body-part detections from nudenet 3.4.2 (bundled ONNX detector).

nudenet is AGPL-licensed, so it is an optional extra: `pip install 'pixql[nudity]'`.
Without it this analyzer is unavailable and the column is absent.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa

from .base import Analyzer, AnalyzerUnavailable, package_version

INSTALL_HINT = "the nudity analyzer needs nudenet (AGPL): pip install 'pixql[nudity]'"

LABEL = pa.struct([("label", pa.string()), ("score", pa.float32()), ("box", pa.list_(pa.int32()))])


class NudityAnalyzer(Analyzer):
    name = "nudity"
    schema = pa.schema([pa.field("nudity_labels", pa.list_(LABEL))])
    sql_types = {"nudity_labels": "STRUCT(label VARCHAR, score FLOAT, box INTEGER[])[]"}

    def __init__(self):
        try:
            from nudenet import NudeDetector
        except ImportError:
            raise AnalyzerUnavailable(INSTALL_HINT) from None
        self.version = package_version("nudenet")
        self.detector = NudeDetector()

    def analyze(self, images):
        out = []
        for im in images:
            bgr = np.ascontiguousarray(np.asarray(im.convert("RGB"))[:, :, ::-1])
            dets = self.detector.detect(bgr)
            out.append({"nudity_labels": [
                {"label": d["class"].lower(), "score": float(d["score"]), "box": [int(v) for v in d["box"]]}
                for d in sorted(dets, key=lambda d: -d["score"])
            ]})
        return out
