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
        """Resize the short side to input_size/crop_pct and take the centre crop, in one pass.

        Resampling only the crop box (PIL's `box=`) gives the same pixels as
        resize-then-crop while never touching the margins that are thrown away.
        """
        size = self.input_size
        w, h = im.size
        scale = (size / self.crop_pct) / min(w, h)  # output pixels per input pixel
        side = size / scale  # the crop's side in input pixels
        left, top = (w - side) / 2, (h - side) / 2
        im = im.resize((size, size), self.interpolation, box=(left, top, left + side, top + side), reducing_gap=3.0)
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
