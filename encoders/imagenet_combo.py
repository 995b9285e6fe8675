"""`imagenet-lite0+lite2`: the two EfficientNet-lite encoders run side by side, one vector set.

Stored per asset: `features`, lite0's 1280 pooled features followed by lite2's 1280 (2560-d:
a labelled head reads both), and `probs`, the mean of the two models' ImageNet class
probabilities (still a distribution over the 1000 classes, so ConSE text heads and the
built-in class heads work unchanged).  Why: on the dev set of `benchmarks/quality.py` the
concatenated features gave the best few-shot heads, and the mean of the probabilities
ranks zero-shot concepts between or above the two (README, *Concept quality*).

Each model sees the image at its own resolution and preprocessing (`:letterbox` / `:both`
apply to both): `preprocess` packs lite2's 260-px view(s) and lite0's 224-px view(s) into one
uint8 tensor (lite0's in the top-left corner of its channels) so the ingest pipeline can stack
and queue it like any other; `encode` unpacks the two and runs each model.  Costs the sum of
the two (about 3x lite0) and needs the extra `pixql[lite2]`.
"""
from __future__ import annotations

import numpy as np
import torch

from . import lookup, register
from .imagenet import ImagenetEncoder


@register
class ImagenetLite0Lite2(ImagenetEncoder):
    name = "imagenet-lite0+lite2"
    usage = "imagenet-lite0+lite2[:letterbox|:both]"
    parts = ("imagenet-lite0", "imagenet-lite2")
    input_size = 260  # the larger part's: what ingest decodes the image at
    crop_pct = 0.89
    vector_columns = {"features": 2560, "probs": 1000}
    sql_prefix = "imagenet_lite0_lite2"

    def _parts(self):
        mode = "" if self.preprocess_mode == "crop" else f":{self.preprocess_mode}"
        return [lookup(p + mode) for p in self.parts]

    def check_spec(self, allowed_roots=None) -> None:
        for p in self._parts():
            p.check_spec(allowed_roots)

    def _load(self) -> None:
        for p in self._parts():
            p.load()

    def to(self, device) -> "ImagenetLite0Lite2":
        for p in self._parts():
            p.to(device)
        self.device = str(device)
        return self

    def preprocess(self, im):
        """uint8 (2C, 260, 260): lite2's C channels, then lite0's C (C = 3, or 6 for "both")
        in the top-left 224 x 224 corner."""
        lite0, lite2 = self._parts()
        a, b = lite0.preprocess(im), lite2.preprocess(im)
        out = torch.zeros((a.shape[0] + b.shape[0], b.shape[1], b.shape[2]), dtype=torch.uint8)
        out[: b.shape[0]] = b
        out[b.shape[0]:, : a.shape[1], : a.shape[2]] = a
        return out

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        self.load()
        lite0, lite2 = self._parts()
        c = batch.shape[1] // 2
        r2 = lite2.encode(batch[:, :c])
        r0 = lite0.encode(batch[:, c:, : lite0.input_size, : lite0.input_size].contiguous())
        return {"features": np.hstack([r0["features"], r2["features"]]).astype(np.float32),
                "probs": ((r0["probs"] + r2["probs"]) / 2).astype(np.float32)}

    def prior_direction(self, head_column, weights, column):
        """A ConSE head over the mean `probs` as a direction in the concatenated `features`: each
        half is that model's classifier rows weighted by the centred memberships."""
        if head_column != "probs" or column != "features":
            return None
        m = weights - weights.mean()
        halves = [m @ p.load().model.get_classifier().weight.detach().float().cpu().numpy() for p in self._parts()]
        return np.concatenate(halves).astype(np.float32)
