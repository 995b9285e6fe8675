"""The stored form of vector parts: Parquet that DuckDB reads and numpy memory-maps.

A vectors part (`datasets/<d>/vectors/<encoder>/part-*.parquet`) holds
`coactive_image_id` and one column per vector (`features`, `probs`, `embedding`
...) as a list of FLOAT16.  Chosen by `benchmarks/vector_forms.py`:

* float16 keeps every element to a relative error of 2^-11, so a ConSE / built-in
  head (memberships in [0, 1] over `probs`) moves by at most 5e-4 and a labelled
  logistic head over `features` measured 1.9e-4; int8 with a per-vector scale
  moved ConSE heads by up to 4.7e-2 (labelled 7.1e-3), and sparse `probs` kept
  ~970 of 1,000 entries to stay in budget on photos the model is unsure of.
* Parquet has no 1-byte type (INT8 is stored as INT32, 4 bytes an element), but
  FLOAT16 is FIXED_LEN_BYTE_ARRAY(2) stored as is: an uncompressed PLAIN data page
  of a list<float16> column ends with the N x D matrix, byte for byte.  `open_column`
  finds those bytes from the footer and the page headers and maps them
  (`np.memmap`), so the bulk scorer, search and labelled training read the vectors
  with no list decoding and no second copy (the raw float32 `.npy` sidecar of
  earlier releases is not written any more).
* DuckDB reads the same column as FLOAT[] (its Parquet reader widens FLOAT16), so
  the SQL concept macros, `similarity_to_asset` and the encoders' SQL columns run on
  the stock CLI unchanged and compute on the same float16 values as numpy.

Parts written before this form (FLOAT lists, zstd) still read: `open_column`
returns None for them and `read` decodes them with pyarrow (or uses the old
sidecar, see `concept_cache.read_vector_part`).
"""
from __future__ import annotations

import os
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .storage import TMP_PREFIX, _fsync_dir

STORED_DTYPE = np.float16
# Rows per row group: one data page per column chunk (a page must stay under 2 GB,
# and one page is one contiguous block of the matrix).
PAGE_BYTES = 256 << 20
CHUNK_ROWS = 2048  # rows per task of `matmul` (each task casts and multiplies them a block at a time)
# Floats per cast block.  The cast's output must still be in the core's cache when the product
# reads it: blocks of a few MB measured 3-10x slower than blocks of 512 KB (1M x 512 and
# 200k x 1280, one head or three).  torch casts a block in pieces under its parallel grain
# size (32,768 elements), so in the calling thread: above it, torch's own threads wait on
# each other whenever another process holds a core (measured 0.23 s -> 13.8 s for 1M x 512
# under load).
BLOCK_FLOATS = 1 << 17
TORCH_BLOCK_FLOATS = 32_768


def block_rows(dim: int) -> int:
    return max(1, BLOCK_FLOATS // max(1, dim))


def vectors_table(ids: list[str], columns: dict[str, "np.ndarray"]) -> pa.Table:
    """A vectors part: coactive_image_id plus one list<float16> column per (N, D) array."""
    arrays = [pa.array(ids, pa.string())]
    names = ["coactive_image_id"]
    for name, mat in columns.items():
        mat = np.ascontiguousarray(mat, dtype=STORED_DTYPE)
        if mat.ndim != 2 or len(mat) != len(ids):
            raise ValueError(f"vector column {name!r} must be ({len(ids)}, D), got {mat.shape}")
        flat = pa.array(mat.reshape(-1), pa.float16())
        arrays.append(pa.FixedSizeListArray.from_arrays(flat, mat.shape[1]))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def conform(table: pa.Table) -> pa.Table:
    """The same rows with every vector column in the stored form (an old part's FLOAT lists -> float16)."""
    cols, names = [], []
    for f, col in zip(table.schema, table.columns):
        names.append(f.name)
        if f.name == "coactive_image_id" or not (pa.types.is_fixed_size_list(f.type) or pa.types.is_list(f.type)):
            cols.append(col)
            continue
        c = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
        if pa.types.is_fixed_size_list(c.type) and c.type.value_type == pa.float16():
            cols.append(c)
            continue
        flat = c.flatten().to_numpy(zero_copy_only=False)
        dim = c.type.list_size if pa.types.is_fixed_size_list(c.type) else (len(flat) // max(len(c), 1))
        cols.append(vectors_table([""] * len(c), {"v": np.asarray(flat).reshape(len(c), dim)}).column(1))
    return pa.Table.from_arrays(cols, names=names)


def _writer_options(schema: pa.Schema) -> dict:
    widths = [f.type.list_size * 2 for f in schema if pa.types.is_fixed_size_list(f.type)]
    vec = [f.name for f in schema if f.name != "coactive_image_id"]
    return dict(compression={"coactive_image_id": "zstd", **{c: "none" for c in vec}},
                use_dictionary=False, write_statistics=["coactive_image_id"],
                data_page_size=PAGE_BYTES * 2, data_page_version="1.0"), max(1, PAGE_BYTES // max(widths or [1]))


def write_table(table: pa.Table, path: Path) -> Path:
    """Write a vectors part atomically: ids zstd, vector columns uncompressed PLAIN, one page a row group."""
    write_tables([table], table.schema, path)
    return Path(path)


def write_tables(tables, schema: pa.Schema, path: Path) -> int:
    """Write tables (an iterable, streamed: compaction merges parts larger than memory) as one vectors
    part, atomically; returns the rows written (`write_table` returns the path)."""
    path = Path(path)
    options, rows_per_group = _writer_options(schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f"{TMP_PREFIX}{os.urandom(8).hex()}-{path.name}"
    rows = 0
    with pq.ParquetWriter(tmp, schema, **options) as w:
        for t in tables:
            w.write_table(t, row_group_size=rows_per_group)
            rows += len(t)
    with open(tmp, "rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return rows


# -- finding the matrix inside the file --------------------------------------------------------
class _Thrift:
    """Just enough of Thrift's compact protocol to read a Parquet PageHeader."""

    def __init__(self, buf, pos: int):
        self.buf, self.pos = buf, pos

    def byte(self) -> int:
        b = self.buf[self.pos]
        self.pos += 1
        return b

    def varint(self) -> int:
        out = shift = 0
        while True:
            b = self.byte()
            out |= (b & 0x7F) << shift
            if not b & 0x80:
                return out
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, t: int):
        if t in (1, 2):
            return t == 1
        if t == 3:
            return self.byte()
        if t in (4, 5, 6):
            return self.zigzag()
        if t == 7:
            self.pos += 8
            return None
        if t == 8:
            n = self.varint()
            self.pos += n
            return None
        if t in (9, 10):
            h = self.byte()
            n, et = h >> 4, h & 0x0F
            if n == 15:
                n = self.varint()
            for _ in range(n):
                self.value(et)
            return None
        if t == 11:
            n = self.varint()
            if n:
                kv = self.byte()
                for _ in range(n):
                    self.value(kv >> 4)
                    self.value(kv & 0x0F)
            return None
        if t == 12:
            return self.struct()
        raise ValueError(f"unknown thrift type {t}")

    def struct(self) -> dict:
        out, fid = {}, 0
        while True:
            h = self.byte()
            if h == 0:
                return out
            t, delta = h & 0x0F, h >> 4
            fid = fid + delta if delta else self.zigzag()
            out[fid] = self.value(t)


def _blocks(path: Path, column: str, dim: int) -> list[tuple[int, int]] | None:
    """(byte offset, rows) of each contiguous float16 block of `column`, or None if not stored compactly."""
    meta = pq.ParquetFile(path).metadata
    idx = [i for i in range(meta.num_columns) if meta.schema.column(i).path.split(".")[0] == column]
    if len(idx) != 1:
        return None
    desc = meta.schema.column(idx[0])
    if desc.physical_type != "FIXED_LEN_BYTE_ARRAY" or desc.length != 2 or "Float16" not in str(desc.logical_type):
        return None
    out = []
    with open(path, "rb") as fh:
        for g in range(meta.num_row_groups):
            cc = meta.row_group(g).column(idx[0])
            if cc.compression != "UNCOMPRESSED" or cc.has_dictionary_page:
                return None
            pos, end = cc.data_page_offset, cc.data_page_offset + cc.total_compressed_size
            rows_left = meta.row_group(g).num_rows
            while pos < end:
                fh.seek(pos)
                head = fh.read(min(4096, end - pos))
                t = _Thrift(head, 0)
                try:
                    h = t.struct()
                except (IndexError, ValueError):
                    return None
                size, start = h.get(3), pos + t.pos
                if h.get(1) == 0 and isinstance(h.get(5), dict):  # DATA_PAGE (v1): rep, def levels, values
                    n = h[5].get(1)
                    fh.seek(start)
                    (rep,) = struct.unpack("<I", fh.read(4))
                    fh.seek(start + 4 + rep)
                    (dfl,) = struct.unpack("<I", fh.read(4))
                    values = start + 8 + rep + dfl
                elif h.get(1) == 3 and isinstance(h.get(8), dict):  # DATA_PAGE_V2: level lengths in the header
                    v2 = h[8]
                    if v2.get(7, True) is not False and cc.compression != "UNCOMPRESSED":
                        return None
                    n = v2.get(1)
                    values = start + (v2.get(5) or 0) + (v2.get(6) or 0)
                else:
                    return None
                # Only when every level is a value (no null list or element) and lists are whole rows
                # is the rest of the page the matrix.
                if n is None or size is None or start + size - values != 2 * n or n % dim:
                    return None
                out.append((values, n // dim))
                rows_left -= n // dim
                pos = start + size
            if rows_left:
                return None
    return out


def open_column(path: Path, column: str, dim: int) -> "Stored | None":
    """The (N, dim) float16 matrix of a compact part's column, memory-mapped; None for the old form."""
    path = Path(path)
    blocks = _blocks(path, column, dim)
    if blocks is None:
        return None
    if not blocks:
        return Stored([np.zeros((0, dim), STORED_DTYPE)])
    # Copy-on-write: readable by torch without its warning about read-only memory; a write
    # (nothing here writes) would change this process's copy of the page, never the file.
    mm = np.memmap(path, dtype=np.uint8, mode="c")
    return Stored([np.frombuffer(mm, dtype=STORED_DTYPE, count=rows * dim, offset=off).reshape(rows, dim)
                   for off, rows in blocks])


def read(path: Path, column: str, dim: int):
    """The column as `Stored` (mapped) or, for a part in the old form, a decoded float32 array."""
    st = open_column(path, column, dim)
    if st is not None:
        return st
    col = pq.read_table(path, columns=[column]).column(0).combine_chunks()
    flat = col.flatten().to_numpy(zero_copy_only=False)
    return np.ascontiguousarray(flat, dtype=np.float32).reshape(-1, dim)


_pool: ThreadPoolExecutor | None = None


_torch_module: list = []
_cv2_module: list = []


def _optional(cache: list, name: str):
    if not cache:
        try:
            cache.append(__import__(name))
        except ImportError:
            cache.append(None)
    return cache[0]


def _torch():
    """torch when installed (PixQL's encoders need it; the stock warehouse layer does not)."""
    return _optional(_torch_module, "torch")


def _cv2():
    """OpenCV when installed (PixQL's analyzers need it): the cast of choice, see `to_float32`."""
    return _optional(_cv2_module, "cv2")


_blas = threading.local()


@contextmanager
def one_blas_thread():
    """OpenBLAS on one thread for the block products inside (re-entrant; the controller is
    built once: threadpoolctl's library discovery measured 5 ms a call, per vector part)."""
    global _controller
    depth = getattr(_blas, "depth", 0)
    if depth:
        _blas.depth = depth + 1
        try:
            yield
        finally:
            _blas.depth -= 1
        return
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    _blas.depth = 1
    try:
        with _controller.limit(limits=1, user_api="blas"):
            yield
    finally:
        _blas.depth = 0


_controller = None


def _threads() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(1, min(4, os.cpu_count() or 1)), thread_name_prefix="pixql-vec")
    return _pool


_local = threading.local()
_TWO_112 = np.float32(2.0 ** 112)


def to_float32(h: np.ndarray) -> np.ndarray:
    """float16 rows -> float32, exactly, into a per-thread buffer (valid until this thread's next call).

    With OpenCV, its cast (the CPU's conversion instructions, one thread a call and the
    GIL released, so the blocks run on a thread per core: 1M x 512 cast and multiplied in
    0.13 s against torch's 0.28 s on the calling thread); else torch's (5x numpy's passes,
    measured); without either, a bit trick: moving exponent and mantissa into float32's
    place and multiplying by 2^112 (which rebiases the exponent, subnormals and zero
    included) in a few vectorised passes over a cached block (numpy's own cast measured 3x
    slower than the product it feeds).
    """
    n = h.size
    buf = getattr(_local, "buf", None)
    if buf is None or buf.size < n:
        buf = _local.buf = np.empty(max(n, BLOCK_FLOATS), np.uint32)
        _local.sign = np.empty_like(buf)
    cv2 = _cv2()
    if cv2 is not None:
        f = buf[:n].view(np.float32).reshape(h.shape[0] if h.ndim > 1 else 1, -1)
        cv2.convertFp16(np.ascontiguousarray(h).view(np.int16).reshape(f.shape), f)
        return f.reshape(h.shape)
    torch = _torch()
    if torch is not None:
        f = buf[:n].view(np.float32)  # (`_local.sign` is the bit trick's alone)
        dst, src = torch.from_numpy(f), torch.from_numpy(np.ascontiguousarray(h).reshape(-1))
        for i in range(0, n, TORCH_BLOCK_FLOATS):  # in pieces torch casts in this thread (above)
            dst[i:i + TORCH_BLOCK_FLOATS].copy_(src[i:i + TORCH_BLOCK_FLOATS])
        return f.reshape(h.shape)
    u, sign = buf[:n].reshape(h.shape), _local.sign[:n].reshape(h.shape)
    np.copyto(u, h.view(np.uint16), casting="unsafe")
    np.bitwise_and(u, 0x8000, out=sign)
    np.left_shift(sign, 16, out=sign)
    np.bitwise_and(u, 0x7FFF, out=u)
    np.left_shift(u, 13, out=u)
    f = u.view(np.float32)
    np.multiply(f, _TWO_112, out=f)
    np.bitwise_or(u, sign, out=u)
    return f


class Stored:
    """Rows of one stored vector column: float16 blocks of a memory map, read as float32.

    Behaves enough like an (N, D) array for its readers: `shape`, `len`, row indexing
    (returns float32), `X @ W` (cast a few thousand rows at a time and multiplied, on
    all cores: the float16 matrix is never copied whole), `np.asarray(X)` (a float32 copy).
    """

    def __init__(self, blocks: list[np.ndarray]):
        self.blocks = blocks
        self.dim = blocks[0].shape[1]
        self.offsets = np.cumsum([0] + [len(b) for b in blocks])
        self.shape = (int(self.offsets[-1]), self.dim)
        self.dtype = np.dtype(np.float32)
        self.ndim = 2

    def __len__(self) -> int:
        return self.shape[0]

    def _spans(self, chunk: int = CHUNK_ROWS):
        for b, lo in zip(self.blocks, self.offsets[:-1]):
            for s in range(0, len(b), chunk):
                yield int(lo) + s, b[s:s + chunk]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, (int, np.integer)):
            r = int(rows) % len(self) if rows < 0 else int(rows)
            k = int(np.searchsorted(self.offsets, r, side="right") - 1)
            return self.blocks[k][r - self.offsets[k]].astype(np.float32)
        if isinstance(rows, slice):
            rows = np.arange(len(self))[rows]
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        out = np.empty((len(rows), self.dim), np.float32)
        which = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(which):
            sel = which == k
            out[sel] = self.blocks[k][rows[sel] - self.offsets[k]]
        return out

    def __array__(self, dtype=None, copy=None):
        out = np.empty(self.shape, np.float32)
        for lo, b in self._spans(1 << 16):
            out[lo:lo + len(b)] = b
        return out if dtype is None else out.astype(dtype, copy=False)

    def matmul(self, W: np.ndarray) -> np.ndarray:
        W = np.asarray(W, dtype=np.float32)
        vec = W.ndim == 1
        W2 = W.reshape(self.dim, -1)
        out = np.empty((len(self), W2.shape[1]), np.float32)
        step = block_rows(self.dim)

        def work(span):
            lo, b = span
            for s in range(0, len(b), step):
                piece = b[s:s + step]
                np.matmul(to_float32(piece), W2, out=out[lo + s:lo + s + len(piece)])

        spans = list(self._spans())
        # One BLAS thread per block: OpenBLAS's own threads on a 512 KB product cost more in
        # hand-offs than the product (measured 3-7x).  OpenCV's and numpy's casts run the
        # blocks on a pool of one thread per core; torch's in this thread alone, where it
        # measured 2x faster than on two threads (1M x 512: 0.19 s against 0.34 s, with or
        # without a shorter GIL switch interval).
        with one_blas_thread():
            if len(spans) > 1 and (_cv2() is not None or _torch() is None):
                list(_threads().map(work, spans))
            else:
                for span in spans:
                    work(span)
        return out[:, 0] if vec else out

    __matmul__ = matmul

    def sq_norms(self) -> np.ndarray:
        out = np.empty(len(self), np.float32)
        for lo, b in self._spans(block_rows(self.dim)):
            x = to_float32(b)
            out[lo:lo + len(b)] = np.einsum("ij,ij->i", x, x)
        return out


def matmul(X, W: np.ndarray) -> np.ndarray:
    """X @ W in float32 for a `Stored` or a plain array."""
    return X.matmul(W) if isinstance(X, Stored) else np.asarray(X, np.float32) @ np.asarray(W, np.float32)
