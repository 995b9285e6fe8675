"""Search: a sentence -> the images and keyframes it describes; an image -> the most similar ones.

    text(wh, "a cat", dataset="photos", limit=10)          -> [Hit]   (text head, like a text concept)
    similar(wh, asset="<id or path>", dataset="photos")     -> [Hit]   (cosine over stored vectors)
    similar(wh, image=PIL.Image, dataset="photos")          -> [Hit]   (the image embedded first)

Both are exact: every stored vector of the dataset's encoder is scored, in bulk,
straight from the vector parts (`warehouse/vector_store.py`: the float16 matrix
inside each part, memory-mapped; parts of the old form through their raw float32
copy in `scores/_vectors/`).  Row norms are cached in `scores/_vectors/` too
(`<part>.<column>.norms.npy`, 4 bytes an asset), so a similar-image search is one
matrix-vector product and a partial sort per part.

* **text**: the encoder's text side builds the same head a text concept with that
  prompt gets (`concepts/text.py`: ConSE over `probs` on ImageNet encoders, the
  text tower on `clip:*`); its probability is the score, so in SQL the same
  ranking is `ORDER BY <concept>_prob` of a concept with that prompt.
* **similar**: cosine similarity over the encoder's richest vector column
  (`warehouse.similarity_sql.similarity_column`: `features` on ImageNet
  encoders, `embedding` on CLIP); the asset itself comes first (cosine 1).
  `similarity_to_asset(coactive_image_id, '<id>')` computes the same in SQL.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from warehouse import catalog
from warehouse.concept_cache import _sidecar, read_vector_part
from warehouse.similarity_sql import similarity_column
from warehouse.vector_store import Stored

from .heads import ConceptError, ConceptNotFound, class_names
from .text import text_head

MAX_LIMIT = 1000


@dataclass
class Hit:
    coactive_image_id: str
    score: float


# -- the vectors, in bulk ----------------------------------------------------------------------
_ids_cache: dict[str, np.ndarray] = {}  # vector part -> its ids (parts are immutable)
# (part, column) -> memory map: kept open so its pages stay mapped between searches.
_maps: dict[tuple[str, str], np.ndarray] = {}
_norms_lock = threading.Lock()


def _part_ids(root: Path, part: str) -> np.ndarray:
    key = str(root / part)
    ids = _ids_cache.get(key)
    if ids is None:
        ids = pq.read_table(root / part, columns=["coactive_image_id"]).column(0).to_numpy(zero_copy_only=False)
        if len(_ids_cache) > 4096:
            _ids_cache.clear()
        _ids_cache[key] = ids
    return ids


def _part_vectors(root: Path, encoder: str, part: str, column: str, dim: int) -> tuple[np.ndarray, object]:
    """(ids, (N, dim) memory-mapped rows) of one vector part; the map is kept open between searches."""
    ids = _part_ids(root, part)
    key = (str(root / part), column)
    X = _maps.get(key)
    if X is not None and X.shape == (len(ids), dim):
        return ids, X
    _, X = read_vector_part(root, encoder, part, column, dim)
    if len(_maps) > 4096:
        _maps.clear()
    _maps[key] = X
    return ids, X


def _part_norms(root: Path, encoder: str, part: str, column: str, X) -> np.ndarray:
    side = _sidecar(root, encoder, part, column)
    path = side.with_name(side.name[: -len(".npy")] + ".norms.npy")
    n = _maps.get((str(path), column))
    if n is not None and n.shape == (len(X),):
        return n
    if path.exists():
        n = np.load(path, mmap_mode="r")
        if n.shape == (len(X),):
            _maps[(str(path), column)] = n
            return n
    sq = X.sq_norms() if isinstance(X, Stored) else np.einsum("ij,ij->i", X, X, dtype=np.float32)
    n = np.sqrt(sq).astype(np.float32)
    with _norms_lock:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{threading.get_ident()}-{path.name}")
        with open(tmp, "wb") as fh:
            np.save(fh, n)
        tmp.replace(path)
    return n


def _scan(wh, encoder: str, column: str, dim: int, parts: list[str], score, k: int,
          keep: set[str] | None = None) -> list[Hit]:
    """The k best rows of `parts` under `score(X, part) -> float32 scores`, best first (ties by id)."""
    root = Path(wh.root)
    best_s, best_i = [], []
    for part in parts:
        ids, X = _part_vectors(root, encoder, part, column, dim)
        if not len(ids):
            continue
        s = np.asarray(score(X, part), dtype=np.float32)
        if keep is not None:
            s = np.where(np.isin(ids, list(keep)), s, -np.inf)
        m = min(k, len(s))
        top = np.argpartition(-s, m - 1)[:m] if m < len(s) else np.arange(len(s))
        best_s.append(s[top])
        best_i.append(ids[top])
    if not best_s:
        return []
    S, I = np.concatenate(best_s), np.concatenate(best_i)
    order = np.lexsort((I, -S))
    out, seen = [], set()
    for j in order:
        if not np.isfinite(S[j]) or I[j] in seen:
            continue
        seen.add(I[j])
        out.append(Hit(str(I[j]), float(S[j])))
        if len(out) == k:
            break
    return out


# -- what to search ----------------------------------------------------------------------------
def _encoder_for(wh, dataset: str | None, encoder: str | None) -> str:
    con = wh.cursor()
    if encoder:
        if not catalog.encoder_columns(con, encoder):
            raise ConceptError(f"no vectors of encoder {encoder!r} in this warehouse")
        return encoder
    if dataset is not None:
        enc = catalog.dataset_encoder(con, dataset)
        if enc is None:
            raise ConceptNotFound(f"no dataset named {dataset!r}")
        return enc
    from .registry import default_encoder

    return default_encoder(wh)


def _parts(wh, dataset: str | None, encoder: str) -> list[str]:
    if dataset is not None and not catalog.dataset_exists(wh.cursor(), dataset):
        raise ConceptNotFound(f"no dataset named {dataset!r}")
    return catalog.part_paths(wh.cursor(), "vectors", dataset=dataset, encoder=encoder)


def _keep(wh, dataset: str | None, media_type: str | None) -> set[str] | None:
    if media_type is None:
        return None
    sql, args = "SELECT coactive_image_id FROM catalog.assets WHERE media_type = ?", [media_type]
    if dataset is not None:
        sql += " AND dataset = ?"
        args.append(dataset)
    return {r[0] for r in wh.cursor().execute(sql, args).fetchall()}


def _window(limit: int, offset: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise ConceptError(f"limit must be between 1 and {MAX_LIMIT}")
    if offset < 0:
        raise ConceptError("offset cannot be negative")
    return limit + offset


def asset_vector(wh, asset: str, encoder: str, column: str, dataset: str | None = None) -> np.ndarray:
    """The stored vector of an asset (by id or path; a path in several datasets: the one in `dataset`)."""
    from .registry import resolve_assets

    ids = resolve_assets(wh, [asset])
    if dataset is not None and len(ids) > 1:
        inside = {r[0] for r in wh.cursor().execute(
            "SELECT coactive_image_id FROM catalog.assets WHERE dataset = ? AND list_contains(?, coactive_image_id)",
            [dataset, ids]).fetchall()}
        ids = [i for i in ids if i in inside] or ids
    row = wh.cursor().execute("SELECT part FROM catalog.embeddings WHERE coactive_image_id = ? AND encoder = ?",
                              [ids[0], encoder]).fetchone()
    if not row:
        raise ConceptNotFound(f"asset {asset!r} has no {encoder} vectors")
    dim = catalog.encoder_columns(wh.cursor(), encoder)[column]
    pids, X = _part_vectors(Path(wh.root), encoder, row[0], column, dim)
    at = np.flatnonzero(pids == ids[0])
    return np.asarray(X[int(at[0])], dtype=np.float32)


def image_vector(image, encoder: str, column: str) -> np.ndarray:
    """An image that is not in the warehouse, embedded by `encoder` (loads its weights once)."""
    import encoders

    return np.asarray(encoders.get_encoder(encoder).encode_images([image])[column][0], dtype=np.float32)


# -- the two searches --------------------------------------------------------------------------
def similar(wh, asset: str | None = None, image=None, vector=None, dataset: str | None = None,
            encoder: str | None = None, limit: int = 10, offset: int = 0,
            media_type: str | None = None) -> list[Hit]:
    """The `limit` assets most similar (cosine) to an asset, an image or a vector, from `offset`."""
    k = _window(limit, offset)
    if sum(x is not None for x in (asset, image, vector)) != 1:
        raise ConceptError("give exactly one of an asset id or path, an image URL or an image")
    encoder = _encoder_for(wh, dataset, encoder)
    con = wh.cursor()
    column = similarity_column(con, encoder)
    dim = catalog.encoder_columns(con, encoder)[column]
    if asset is not None:
        q = asset_vector(wh, asset, encoder, column, dataset)
    elif image is not None:
        q = image_vector(image, encoder, column)
    else:
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
    if q.shape != (dim,) or not np.all(np.isfinite(q)):
        raise ConceptError(f"the query vector must be {dim} finite numbers (encoder {encoder}, column {column})")
    norm = float(np.linalg.norm(q))
    if norm == 0:
        raise ConceptError("the query vector is all zeros: cosine similarity is undefined")
    q = (q / norm).astype(np.float32)
    root = Path(wh.root)

    def score(X, part):
        n = _part_norms(root, encoder, part, column, X)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(n > 0, (X @ q) / n, -np.inf)

    hits = _scan(wh, encoder, column, dim, _parts(wh, dataset, encoder), score, k, _keep(wh, dataset, media_type))
    return hits[offset:]


def text(wh, queries, dataset: str | None = None, encoder: str | None = None, limit: int = 10,
         offset: int = 0, media_type: str | None = None) -> list[Hit]:
    """The `limit` assets a sentence (or several, as one concept's prompts) describes best."""
    queries = [queries] if isinstance(queries, str) else list(queries or [])
    encoder = _encoder_for(wh, dataset, encoder)
    head = text_head(encoder, queries, None, class_names(wh.cursor(), encoder))
    return rank_by_head(wh, head, dataset, limit, offset, media_type)


def rank_by_head(wh, head, dataset: str | None = None, limit: int = 10, offset: int = 0,
                 media_type: str | None = None) -> list[Hit]:
    """Assets ranked by a concept head's probability (the scan behind `text`), best first."""
    k = _window(limit, offset)
    encoder = head.encoder
    cols = catalog.encoder_columns(wh.cursor(), encoder)
    if cols.get(head.column) != head.dim:
        raise ConceptError(f"encoder {encoder!r} stores no {head.dim}-dim column {head.column!r}")
    w = (head.weights * np.float32(head.scale)).astype(np.float32)

    # Rank by the head's own z (the link is monotone); report its probability.
    hits = _scan(wh, encoder, head.column, head.dim, _parts(wh, dataset, encoder),
                 lambda X, part: X @ w + np.float32(head.bias), k, _keep(wh, dataset, media_type))
    for h in hits:
        z = h.score
        h.score = float(1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))) if head.link == "logistic" else \
            float(min(max(z, 0.0), 1.0))
    return hits[offset:]


def describe(wh, ids: list[str]) -> dict[str, dict]:
    """What a result needs about each asset: dataset, path, media type, dates, metadata, keyframe fields."""
    import json

    if not ids:
        return {}
    con = wh.cursor()
    rows = con.execute("SELECT coactive_image_id, dataset, path, media_type, created_dt, part FROM catalog.assets "
                       "WHERE list_contains(?, coactive_image_id)", [list(ids)]).fetchall()
    out = {r[0]: dict(zip(["coactive_image_id", "dataset", "path", "media_type", "created_dt", "part"], r))
           for r in rows}
    parts = sorted({r["part"] for r in out.values()})
    if parts:
        files = [str(Path(wh.root) / p) for p in parts]
        for i, meta, vid, kidx, kms in con.execute(
                "SELECT coactive_image_id, metadata, coactive_video_id, keyframe_index, keyframe_time_ms "
                "FROM read_parquet(?) WHERE list_contains(?, coactive_image_id)", [files, list(ids)]).fetchall():
            try:
                m = json.loads(meta) if meta else None
            except ValueError:
                m = None
            out[i].update(metadata=m if isinstance(m, dict) else None, coactive_video_id=vid,
                          keyframe_index=kidx, keyframe_time_ms=kms)
    videos = {r.get("coactive_video_id") for r in out.values()} - {None}
    for vid in videos:
        row = con.execute("SELECT path, created_dt, sample_fps, duration_ms FROM catalog.videos "
                          "WHERE coactive_video_id = ?", [vid]).fetchone()
        for r in out.values():
            if r.get("coactive_video_id") == vid and row:
                r["video"] = dict(zip(["path", "created_dt", "sample_fps", "duration_ms"], row))
    return out
