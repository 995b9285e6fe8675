"""The encoder contract shared by every model PixQL embeds with."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image


class Encoder:
    """Subclasses set `name`, `kind`, `input_size`, `vector_columns`, mean/std and `_forward`.

    `preprocess` runs in decode worker threads and yields a uint8 tensor (cheap
    to queue); `encode` normalises a batch and runs the model on the main thread.
    """

    name: str
    kind: str
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation = Image.BICUBIC
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    vector_columns: dict[str, int]

    def preprocess(self, im: Image.Image) -> torch.Tensor:
        size = self.input_size
        scale = int(round(size / self.crop_pct))
        w, h = im.size
        if w < h:
            nw, nh = scale, max(scale, round(h * scale / w))
        else:
            nw, nh = max(scale, round(w * scale / h)), scale
        im = im.resize((nw, nh), self.interpolation, reducing_gap=3.0)
        left, top = (nw - size) // 2, (nh - size) // 2
        im = im.crop((left, top, left + size, top + size))
        arr = np.asarray(im, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.std).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """uint8 (B,3,H,W) -> {column: float32 (B,D)} for every vector column."""
        return self._forward(self._normalise(batch))

    def encode_images(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        return self.encode(torch.stack([self.preprocess(im.convert("RGB")) for im in images]))

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        raise NotImplementedError
