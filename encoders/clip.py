"""`clip:<model>:<pretrained>`: open_clip image and text towers.

`<pretrained>` is an open_clip tag (downloaded where the network allows), a local
checkpoint file, or a local directory holding one (`open_clip_pytorch_model.bin`,
`*.safetensors`, `*.pt`/`*.pth`/`*.bin`).  Stored per asset: `embedding`, the
L2-normalised image embedding (its dimension depends on the model, so it is
known once loaded or once a dataset used it).

Text heads: with positive text embedding t+ (mean of the normalised prompt
embeddings, including the template "a photo of {prompt}") and negative t- (the
negative prompts, or "a photo" when none are given),
P = softmax over {t+, t-} of CLIP's own logits = sigmoid(logit_scale * x.(t+ - t-)),
the two-way zero-shot classifier CLIP was trained to be; linear in `embedding`.
Labelled heads read `embedding` too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import register
from .base import Encoder, linear_head

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
PREFIX = "clip:"


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


@register
class ClipEncoder(Encoder):
    kind = "clip"
    usage = "clip:<model>:<pretrained>"
    text_column = "embedding"
    labeled_column = "embedding"

    def __init__(self, name: str):
        parts = name.split(":", 2)
        if len(parts) != 3 or not parts[1]:
            raise ValueError(f"CLIP encoder must be 'clip:<model>:<pretrained>', got {name!r}")
        super().__init__(name)
        self.model_name, self.pretrained = parts[1], parts[2]

    @classmethod
    def handles(cls, name: str) -> bool:
        return name.startswith(PREFIX)

    def check_spec(self, allowed_roots=None) -> None:
        """The model must be an open_clip architecture and the pretrained part `none`, a tag
        open_clip knows for it, or a checkpoint file or directory.  With `allowed_roots` (a
        server's `--path-root`s) a checkpoint must resolve inside one of them, checked before
        existence so the answer tells nothing about files outside."""
        import difflib

        import open_clip

        models = open_clip.list_models()
        if self.model_name not in models:
            near = difflib.get_close_matches(self.model_name, models, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else " (see open_clip.list_models())"
            raise ValueError(f"unknown CLIP model {self.model_name!r}{hint}")
        pretrained = self.pretrained
        if not pretrained:
            raise ValueError(f"CLIP encoder must be 'clip:<model>:<pretrained>', got {self.name!r}")
        tags = open_clip.list_pretrained_tags_by_model(self.model_name)
        if pretrained in ("none", "None") or pretrained in tags:
            return
        p = Path(pretrained).expanduser()
        if allowed_roots:
            resolved = p.resolve()
            if not any(resolved.is_relative_to(Path(r).resolve()) for r in allowed_roots):
                raise PermissionError(f"CLIP checkpoint {pretrained} is outside the directories this server reads")
        if p.is_file() or (p.is_dir() and any(f.suffix in WEIGHT_SUFFIXES for f in p.iterdir())):
            return
        known = ", ".join(tags[:6]) + (", ..." if len(tags) > 6 else "") if tags else "none for this model"
        raise ValueError(f"{pretrained!r} is neither a pretrained tag of {self.model_name} ({known}) nor a "
                         f"checkpoint file or a directory holding one ({', '.join(WEIGHT_SUFFIXES)})")

    @classmethod
    def from_name(cls, name: str) -> "ClipEncoder":
        """A loaded CLIP encoder (a missing checkpoint is a FileNotFoundError here)."""
        return cls(name).load()

    def _load(self) -> None:
        import open_clip

        pretrained = resolve_pretrained(self.pretrained)
        model, _, _ = open_clip.create_model_and_transforms(self.model_name, pretrained=pretrained)
        self.model = model.eval()
        self.tokenizer = open_clip.get_tokenizer(self.model_name)
        cfg = getattr(self.model.visual, "preprocess_cfg", {}) or {}
        size = getattr(self.model.visual, "image_size", 224)
        self.input_size = size[0] if isinstance(size, (tuple, list)) else int(size)
        self.mean = tuple(cfg.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(cfg.get("std", (0.26862954, 0.26130258, 0.27577711)))
        self.crop_pct = 1.0
        with torch.inference_mode():
            dim = self.model.encode_image(torch.zeros(1, 3, self.input_size, self.input_size)).shape[-1]
        self.vector_columns = {"embedding": int(dim)}

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        emb = self.model.encode_image(x)
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return {"embedding": emb.float().cpu().numpy()}

    @torch.inference_mode()
    def encode_text(self, texts: list[str]) -> np.ndarray:
        self.load()
        emb = self.model.encode_text(self.tokenizer(texts).to(self.device))
        emb = emb / emb.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        return emb.float().cpu().numpy()

    def text_head(self, prompts, negatives, class_names=None) -> dict:
        pos = self.encode_text(prompts + [f"a photo of {p}" for p in prompts]).mean(axis=0)
        neg = self.encode_text(negatives or ["a photo"]).mean(axis=0)
        pos /= max(float(np.linalg.norm(pos)), 1e-12)
        neg /= max(float(np.linalg.norm(neg)), 1e-12)
        scale = float(self.model.logit_scale.exp().item())
        return linear_head("embedding", pos - neg, scale, 0.0, "logistic",
                          {"method": "clip-two-way-softmax", "logit_scale": scale,
                           "negatives_used": negatives or ["a photo"]})
