"""The encoder contract: the model side (preprocess, encode) and the capabilities the rest of
PixQL asks an encoder about, so that nothing outside this package names an encoder.

Capabilities (all answerable without loading the model weights, except where noted):

| attribute / method       | used by                         | meaning                                    |
| ------------------------ | ------------------------------- | ------------------------------------------ |
| `vector_columns`         | ingest (after `load()`)         | column -> dim of the vectors it stores     |
| `known_columns()`        | concepts (before any ingest)    | the columns known without the model        |
| `text_column`            | concepts.text                   | column a text head reads; None = no text side |
| `text_head(...)`         | concepts.text                   | prompts -> `linear_head(...)` over `text_column` |
| `labeled_column`         | concepts.heads                  | column a labelled head reads (None: the only one) |
| `prior_direction(...)`   | concepts.labeled                | a text head as a direction in another column |
| `builtin_head(entry)`    | concepts.catalogue              | a built-in catalogue entry -> head + stored prompts |
| `sql_columns()`          | ingest -> catalog.encoder_sql   | SQL the views add for this encoder (stored as data) |
| `class_names`            | ingest -> catalog.class_names   | class labels of a classifier's `probs`     |

Heads come back as `linear_head(...)` dicts (plain numbers); `concepts` makes them
its `HeadSpec`, so this package imports nothing of `concepts`, `ingest` or `warehouse`.
"""
from __future__ import annotations

import threading
import numpy as np
import torch
from PIL import Image


def linear_head(column: str, weights, scale: float = 1.0, bias: float = 0.0, link: str = "logistic",
                training: dict | None = None) -> dict:
    """An encoder's answer for a head, prob = link(scale * x . weights + bias) over one stored
    vector column: the keyword arguments `concepts.heads.HeadSpec` takes after kind and encoder."""
    return {"column": column, "weights": np.asarray(weights, dtype=np.float32), "scale": float(scale),
            "bias": float(bias), "link": link, "training": dict(training or {})}


class Encoder:
    """Subclasses set `name`, `kind`, `input_size`, `vector_columns`, mean/std, `_load` and `_forward`.

    Construction is cheap (no weights): capability questions use the instance
    `encoders.lookup(name)` returns; `load()` (what `get_encoder` calls) reads the
    weights once.  `preprocess` runs in decode worker threads and yields a uint8
    tensor (cheap to queue); `encode` normalises a batch and runs the model on the
    main thread.
    """

    name: str
    kind: str
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation = Image.BICUBIC
    mean = (0.485, 0.456, 0.406)
    std = (0.229, 0.224, 0.225)
    vector_columns: dict[str, int]
    text_column: str | None = None
    labeled_column: str | None = None
    class_names: list[str] | None = None

    def __init__(self, name: str | None = None):
        """Cheap: no weights.  Raise ValueError here for a malformed name."""
        if name is not None:
            self.name = name
        self._loaded = False
        self._load_lock = threading.Lock()

    # -- naming ----------------------------------------------------------------
    @classmethod
    def handles(cls, name: str) -> bool:
        """Whether `name` is this encoder (a family such as `clip:` overrides this)."""
        return name == cls.name

    usage: str = ""  # how to spell the name, for the unknown-encoder message

    # -- the model -------------------------------------------------------------
    def check_spec(self, allowed_roots=None) -> None:
        """Raise ValueError (or PermissionError) if this name could not load; reads no weights."""

    def load(self) -> "Encoder":
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True
        return self

    def _load(self) -> None:
        """Read the weights; set anything that depends on them (e.g. `vector_columns`)."""

    # Where the model runs: "cpu" unless `to` moved it (a Ray actor that was given a GPU does).
    device: str = "cpu"

    def to(self, device) -> "Encoder":
        """Run the model on `device` (a torch device name, e.g. "cuda:0"); `encode` moves each batch
        there and still returns numpy arrays on the host."""
        self.load()
        for m in self._torch_modules():
            m.to(device)
        self.device = str(device)
        return self

    def _torch_modules(self) -> list:
        """The modules `to` moves: `self.model` by default."""
        m = getattr(self, "model", None)
        return [m] if m is not None else []

    def known_columns(self) -> dict[str, int]:
        """Vector columns known without loading the model ({} when they depend on the weights)."""
        cols = getattr(type(self), "vector_columns", None)
        return dict(cols) if isinstance(cols, dict) else {}

    # How `preprocess` fits an image into the square input: "crop" (resize the short side, centre
    # crop: what the ImageNet weights were evaluated with), "letterbox" (resize the long side and
    # pad to a square with the mean colour: the whole image is seen) or "both" (the two views
    # stacked as 6 channels; `encode` averages the model's outputs over them).  An encoder name
    # carries it (`imagenet-lite0:letterbox`), so vectors of each setting are stored apart.
    PREPROCESS_MODES = ("crop", "letterbox", "both")
    preprocess_mode: str = "crop"

    def preprocess(self, im: Image.Image) -> torch.Tensor:
        """uint8 (3, S, S) for "crop" and "letterbox", (6, S, S) for "both" (crop view first)."""
        if self.preprocess_mode == "letterbox":
            return self._letterbox(im)
        if self.preprocess_mode == "both":
            return torch.cat([self._crop(im), self._letterbox(im)], 0)
        return self._crop(im)

    def _crop(self, im: Image.Image) -> torch.Tensor:
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

    def _letterbox(self, im: Image.Image) -> torch.Tensor:
        """Resize the long side to input_size and centre the image on a mean-colour square.

        The pad is the normalisation mean, so it becomes 0 after `_normalise`: the
        network sees "nothing" there rather than a black or white frame.
        """
        size = self.input_size
        w, h = im.size
        scale = size / max(w, h)
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        im = im.resize((nw, nh), self.interpolation, reducing_gap=3.0)
        pad = tuple(int(round(255 * m)) for m in self.mean)
        canvas = Image.new("RGB", (size, size), pad)
        canvas.paste(im, ((size - nw) // 2, (size - nh) // 2))
        arr = np.asarray(canvas, dtype=np.uint8)
        return torch.from_numpy(arr.copy()).permute(2, 0, 1)

    def _normalise(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().div_(255.0)
        mean = torch.tensor(self.mean, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor) -> dict[str, np.ndarray]:
        """uint8 (B,3,H,W) -> {column: float32 (B,D)} for every vector column."""
        self.load()
        if self.device != "cpu":
            batch = batch.to(self.device, non_blocking=True)  # uint8 over the bus: 4x less than float
        if batch.shape[1] == 6:  # "both": the two views through the model, outputs averaged
            a, b = self._forward(self._normalise(batch[:, :3])), self._forward(self._normalise(batch[:, 3:]))
            return {k: ((a[k] + b[k]) / 2).astype(np.float32) for k in a}
        return self._forward(self._normalise(batch))

    def encode_images(self, images: list[Image.Image]) -> dict[str, np.ndarray]:
        return self.encode(torch.stack([self.preprocess(im.convert("RGB")) for im in images]))

    def _forward(self, x: torch.Tensor) -> dict[str, np.ndarray]:
        raise NotImplementedError

    # -- capabilities the concept layer uses -----------------------------------
    def text_head(self, prompts: list[str], negatives: list[str], class_names: list[str] | None = None) -> dict:
        """A zero-shot head from cleaned prompts; only called when `text_column` is set."""
        raise NotImplementedError(f"encoder {self.name!r} has no text side")

    def prior_direction(self, head_column: str, weights: np.ndarray, column: str) -> np.ndarray | None:
        """A head over `head_column` as a direction in `column` (the labelled-head prior), or None."""
        return None

    def builtin_head(self, entry, class_names: list[str] | None = None) -> tuple[dict, list, list] | None:
        """A built-in catalogue entry on this encoder: (head, prompts, negatives) or None if it has no definition.

        The default is the encoder's text side on the entry's plain-English prompts.
        """
        if self.text_column is None or not entry.prompts:
            return None
        return self.text_head(list(entry.prompts), list(entry.negatives), class_names), \
            list(entry.prompts), list(entry.negatives)

    def sql_columns(self) -> list[tuple[str, str]]:
        """(kind, sql) rows for `catalog.encoder_sql`: kind 'macro' runs before the views, kind
        'column' is a `coactive_table_adv` column.  `{vectors}` stands for the alias of this
        encoder's vectors, `{class_names}` for a list literal of `catalog.class_names`."""
        return []
