"""`clip:<model>:<pretrained>`: open_clip image and text towers.

`<pretrained>` is an open_clip tag (downloaded where the network allows), a local
checkpoint file, or a local directory holding one (`open_clip_pytorch_model.bin`,
`*.safetensors`, `*.pt`/`*.pth`/`*.bin`).  Stored per asset: `embedding`, the
L2-normalised image embedding.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .base import Encoder

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def resolve_pretrained(pretrained: str) -> str | None:
    if pretrained in ("", "none", "None"):
        return None
    p = Path(pretrained).expanduser()
    if p.is_dir():
        cands = sorted(f for f in p.iterdir() if f.suffix in WEIGHT_SUFFIXES)
        if not cands:
            raise FileNotFoundError(f"no checkpoint ({', '.join(WEIGHT_SUFFIXES)}) in directory {p}")
        return str(cands[0])
    if p.exists():
        return str(p)
    if "/" in pretrained or pretrained.endswith(WEIGHT_SUFFIXES):
        raise FileNotFoundError(f"CLIP checkpoint not found: {pretrained}")
    return pretrained  # an open_clip tag


class ClipEncoder(Encoder):
    kind = "clip"

    def __init__(self, name: str, model_name: str, pretrained: str | None):
        import open_clip

        self.name = name
        model, _, preprocess = open_clip.create_model_and_transforms(model_name, pretrained=pretrained)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(model_name)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = getattr(self.model.visual, "image_size", 224)
        self.input_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.crop_pct = 1.0
        with torch.inference_mode():
            dim = self.model.encode_image(torch.zeros(1, 3, self.input_size, self.input_size)).shape[-1]
        self.vector_columns = {"embedding": int(dim)}

    @classmethod
    def from_name(cls, name: str) -> "ClipEncoder":
        parts = name.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            raise ValueError(f"CLIP encoder must be 'clip:<model>:<pretrained>', got {name!r}")
        return cls(name, parts[1], resolve_pretrained(parts[2]))

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        emb = self.model.encode_image(x)
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return {"embedding": emb.float().numpy()}

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        emb = self.model.encode_text(self.tokenizer(texts))
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.float().numpy()
