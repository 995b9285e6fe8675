"""A compact set of asset ids: what an ingest run keeps of the ids already committed.

Asset ids are `str(uuid.uuid5(...))` (ingest/decode.py `asset_id`, ingest/video.py):
the canonical lowercase form "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx".  A Python
set of such strings costs ~119 bytes per id; a run keeps two (ids with an asset
row, ids with this encoder's vectors) of every asset in the dataset, so a 1M
asset dataset cost ~240 MB before the first file was read.  Here an id in that
form is its 128 bits as two uint64 halves in sorted numpy arrays (big-endian
halves, so numeric order is the text's order), found by `np.searchsorted`:
16 bytes per id, and built from an Arrow column without a Python string per id.

Semantics are exactly a set of strings: any other string (upper case, another
form, an id a test or an older release wrote) is kept in a small Python set, so
"ABC..." and "abc..." stay different ids as they are in the catalog.

Additions go to a small pending set, merged into the array when it grows past
a fraction of it (amortised O(1) copies per id: one O(N + M) insert per merge).  One thread writes (the
run's main thread); decoding threads only test membership.  A merge publishes
the new arrays (one attribute) before it drops the pending set, and a lookup
reads the pending set before the arrays, so a reader never misses an id added before its lookup.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np
import pyarrow as pa

from warehouse import catalog

_UUID_LEN = 36
_DASHES = (8, 13, 18, 23)
_HEX_COLS = np.array([i for i in range(_UUID_LEN) if i not in _DASHES])
_CHUNK = 1 << 16  # rows parsed at once: bounds the temporary (rows x 36) index matrix
_EMPTY = np.empty(0, np.uint64)

# ASCII -> nibble for lowercase hex only (the canonical form); 255 marks anything else.
_NIBBLE = np.full(256, 255, np.uint8)
_NIBBLE[np.frombuffer(b"0123456789", np.uint8)] = np.arange(10)
_NIBBLE[np.frombuffer(b"abcdef", np.uint8)] = np.arange(10, 16)


def _parse_rows(chars: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(k, 36) uint8 characters -> (hi, lo) uint64 halves of the canonical rows, and their mask."""
    ok = np.all(chars[:, _DASHES] == ord("-"), axis=1)
    nib = _NIBBLE[chars[:, _HEX_COLS]]  # (k, 32)
    ok &= np.all(nib != 255, axis=1)
    nib = nib[ok]
    packed = np.ascontiguousarray((nib[:, 0::2] << 4) | nib[:, 1::2])  # (k', 16) bytes in hex order
    halves = packed.view(">u8").astype(np.uint64)  # (k', 2): big-endian, so numeric order = text order
    return halves[:, 0].copy(), halves[:, 1].copy(), ok


def _strings(ids) -> pa.StringArray:
    if not isinstance(ids, (pa.Array, pa.ChunkedArray)):
        ids = pa.array(ids if isinstance(ids, (list, tuple, np.ndarray)) else list(ids), pa.string())
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks() if ids.num_chunks else pa.array([], pa.string())
    return ids if ids.type == pa.string() else ids.cast(pa.string())


def _parse(ids: pa.StringArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hi, lo, row numbers in `ids`) of the canonical ids, in row order; nulls are not canonical."""
    n = len(ids)
    if not n:
        return _EMPTY, _EMPTY, np.empty(0, np.int64)
    bufs = ids.buffers()
    offsets = np.frombuffer(bufs[1], np.int32)[ids.offset:ids.offset + n + 1].astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.empty(0, np.uint8)
    fit = np.diff(offsets) == _UUID_LEN
    if ids.null_count:
        fit &= ~np.asarray(ids.is_null().to_numpy(zero_copy_only=False), bool)
    if fit.all() and offsets[-1] - offsets[0] == _UUID_LEN * n:
        # The usual case, every id in the 36-character form: a reshape, no gather.
        chars = data[offsets[0]:offsets[-1]].reshape(n, _UUID_LEN)
        h, l, ok = _parse_rows(chars)
        return h, l, np.flatnonzero(ok)
    his, los, rows = [], [], []
    for lo in range(0, n, _CHUNK):
        r = lo + np.flatnonzero(fit[lo:lo + _CHUNK])
        if len(r):
            h, l, ok = _parse_rows(data[offsets[r, None] + np.arange(_UUID_LEN)])
            his.append(h)
            los.append(l)
            rows.append(r[ok])
    if not his:
        return _EMPTY, _EMPTY, np.empty(0, np.int64)
    return np.concatenate(his), np.concatenate(los), np.concatenate(rows)


def _split(ids) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Ids (an Arrow string array, or any iterable of str) -> (hi, lo of the canonical ones, the other strings)."""
    ids = _strings(ids)
    hi, lo, rows = _parse(ids)
    other = np.ones(len(ids), bool)
    other[rows] = False
    if ids.null_count:
        other &= ~np.asarray(ids.is_null().to_numpy(zero_copy_only=False), bool)
    return hi, lo, [ids[int(i)].as_py() for i in np.flatnonzero(other)]


_HEX = frozenset("0123456789abcdef")


def _key(s: str) -> tuple[int, int] | None:
    """(hi, lo) of one id in canonical form, else None."""
    if len(s) != _UUID_LEN or not (s[8] == s[13] == s[18] == s[23] == "-"):
        return None
    h = s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
    if not _HEX.issuperset(h):  # int(..., 16) alone would also take upper case, '_' and signs
        return None
    return int(h[:16], 16), int(h[16:], 16)


def _unique_sorted(hi: np.ndarray, lo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (hi, lo) pairs sorted by hi then lo, duplicates dropped."""
    if not len(hi):
        return _EMPTY, _EMPTY
    order = np.argsort(hi)  # one uint64 sort: ~6x faster than lexsort on both halves
    hi, lo = hi[order], lo[order]
    if np.any(hi[1:] == hi[:-1]):  # equal high halves (duplicates, mostly): order by both
        order = np.lexsort((lo, hi))
        hi, lo = hi[order], lo[order]
    keep = np.ones(len(hi), bool)
    keep[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    return hi[keep], lo[keep]


class IdSet:
    """A set of id strings: `in`, `add`, `update`, `len`, `contains` (vectorised), iteration.

    Canonical ids are two sorted uint64 arrays (`_hi`, `_lo`; pairs in (hi, lo) order):
    `searchsorted` on `_hi` finds the run of equal halves, almost always one row.
    """

    def __init__(self, ids=()):
        hi, lo, other = _split(ids)
        # One attribute holding both halves: a merge replaces it in one store, so a reader in
        # another thread never pairs a new `hi` with an old `lo`.
        self._arrays = _unique_sorted(hi, lo)
        self._other: set[str] = set(other)
        self._pending: set[tuple[int, int]] = set()

    # -- reading (any thread) --------------------------------------------------------
    def __contains__(self, s) -> bool:
        if not isinstance(s, str):
            return False
        k = _key(s)
        if k is None:
            return s in self._other
        # The pending set before the arrays: see the module docstring.
        return k in self._pending or self._in_arrays(k)

    def _in_arrays(self, k: tuple[int, int]) -> bool:
        hi, lo = self._arrays
        h, l = np.uint64(k[0]), np.uint64(k[1])
        i = int(np.searchsorted(hi, h))
        while i < len(hi) and hi[i] == h:
            if lo[i] == l:
                return True
            i += 1
        return False

    def _positions(self, h: np.ndarray, l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For each (h, l): where it goes in the arrays (keeping them sorted), and whether it is there."""
        hi, lo = self._arrays
        left = np.searchsorted(hi, h, "left")
        right = np.searchsorted(hi, h, "right")
        pos, found = left.copy(), np.zeros(len(h), bool)
        one = np.flatnonzero(right - left == 1)  # the usual case: one row shares the high half
        found[one] = lo[left[one]] == l[one]
        pos[one] += lo[left[one]] < l[one]
        for i in np.flatnonzero(right - left > 1):  # high halves equal across ids: vanishingly rare
            run = lo[left[i]:right[i]]
            j = int(np.searchsorted(run, l[i]))
            pos[i] = left[i] + j
            found[i] = j < len(run) and run[j] == l[i]
        return pos, found

    def contains(self, ids) -> np.ndarray:
        """Membership of many ids (Arrow array or iterable of str) as a bool array in their order.
        Merges pending additions first, so call it from the writing thread."""
        ids = _strings(ids)
        out = np.zeros(len(ids), bool)
        self._merge()
        h, l, rows = _parse(ids)
        if len(rows) and len(self._hi):
            out[rows] = self._positions(h, l)[1]
        if self._other:
            canon = np.zeros(len(ids), bool)
            canon[rows] = True
            for i in np.flatnonzero(~canon):
                out[i] = ids[int(i)].as_py() in self._other
        return out

    @property
    def _hi(self) -> np.ndarray:
        return self._arrays[0]

    @property
    def _lo(self) -> np.ndarray:
        return self._arrays[1]

    def __len__(self) -> int:
        return len(self._hi) + len(self._pending) + len(self._other)

    def __iter__(self):
        self._merge()
        hi, lo = self._arrays
        for h, l in zip(hi.tolist(), lo.tolist()):
            x = f"{h:016x}{l:016x}"
            yield f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
        yield from self._other

    @property
    def nbytes(self) -> int:
        """Bytes the arrays hold (the pending and non-canonical sets are small and not counted)."""
        return self._hi.nbytes + self._lo.nbytes

    # -- writing (one thread) --------------------------------------------------------
    def add(self, s: str) -> None:
        k = _key(s)
        if k is None:
            self._other.add(s)
            return
        if k in self._pending or self._in_arrays(k):
            return  # keeps len() exact and the pending set small
        self._pending.add(k)
        if len(self._pending) > max(1024, len(self._hi) >> 5):
            self._merge()

    def update(self, ids: Iterable[str]) -> None:
        hi, lo, other = _split(ids)
        self._other.update(other)
        if len(hi):
            ph, pl = self._pending_arrays()
            self._publish(np.concatenate([hi, ph]), np.concatenate([lo, pl]))

    def _pending_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._pending:
            return _EMPTY, _EMPTY
        a = np.array(list(self._pending), np.uint64).reshape(-1, 2)
        return a[:, 0].copy(), a[:, 1].copy()

    def _merge(self) -> None:
        if self._pending:
            self._publish(*self._pending_arrays())

    def _publish(self, h: np.ndarray, l: np.ndarray) -> None:
        h, l = _unique_sorted(h, l)
        pos, found = self._positions(h, l)
        h, l, pos = h[~found], l[~found], pos[~found]
        if len(h):
            # Positions in the old arrays keep them sorted: one O(N + M) copy, no re-sort.
            hi, lo = self._arrays
            self._arrays = (np.insert(hi, pos, h), np.insert(lo, pos, l))
        self._pending = set()  # after the arrays: a reader checks pending first


def committed_ids(con, dataset: str, embedded_by: str | None = None, paths: list[str] | None = None) -> IdSet:
    """Ids of the dataset's assets (only those with `embedded_by` vectors, and at one of `paths`,
    if given), as an `IdSet`."""
    return IdSet(catalog.asset_id_column(con, dataset, embedded_by, paths))
