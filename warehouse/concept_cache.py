"""Materialised concept scores: the numpy twin of the SQL concept heads, and their cache files.

A concept version's head is data in `catalog.concept_versions`:

    prob = link(scale * (x . weights) + bias)
    link = logistic: 1 / (1 + exp(-clamp(z, -50, 50)))      (CLIP text, labeled heads)
           linear:   clamp(z, 0, 1)                          (ImageNet ConSE text heads)

`concept_sql.py` compiles the same formula into a DuckDB macro.  This module
computes it in bulk with numpy (one matrix product per vector part for every
head on that vector column) and writes `scores/<concept>/v<N>.parquet`: one
`prob` column aligned row by row with the asset parts it covers (no join on
string ids).  Rows are aligned with `pixql_internal.assets`, which reads the
asset parts in catalog order; the combined segments (`combined_segments`) put
those asset rows and every complete cache side by side, and the views scan
them.  A later asset part gets its own increment file
(`v<N>-<seq>.parquet`); a cache whose parts are no longer a prefix of the
current asset parts, or whose covered assets got new vectors, is dropped and
the macro takes over until it is rebuilt, so a query never reads stale scores.

Vector parts are read through `vector_store`: a part in the compact form
(list<float16>, uncompressed) is memory-mapped and multiplied a few thousand rows
at a time, with no decoding and no copy.  A part written before that form is
decoded once and, as before, leaves a raw float32 copy of the column in
`scores/_vectors/<encoder>/<part>.<column>.npy` that later scorings map (a
rebuildable cache; compaction and erasure rewrite such parts in the compact form).

Size: over 400 lines because the bulk scorer, the segment bookkeeping and the
staleness checks share one alignment invariant (rows in `pixql_internal.assets`
order); splitting them would spread that invariant over modules.
"""
from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import catalog, encoder_columns, vector_store
from .schema import ASSET_SCHEMA
from .storage import TMP_PREFIX, atomic_parquet_writer, atomic_write_parquet, safe_name

Z_CLAMP = 50.0
COMPACT_AFTER = 32  # increment files per version before they are merged into one


@dataclass
class Head:
    concept: str
    version: int
    encoder: str
    column: str
    dim: int
    weights: np.ndarray
    scale: float
    bias: float
    link: str
    threshold: float


def load_heads(con, concept: str | None = None) -> list[Head]:
    sql = (
        "SELECT concept, version, encoder, vector_column, dim, weights, scale, bias, link, threshold "
        "FROM catalog.concept_versions"
    )
    rows = con.execute(sql + " WHERE concept = ? ORDER BY version", [concept]).fetchall() if concept else \
        con.execute(sql + " ORDER BY concept, version").fetchall()
    return [
        Head(r[0], r[1], r[2], r[3], r[4], np.asarray(r[5], dtype=np.float32), float(r[6]), float(r[7]), r[8], float(r[9]))
        for r in rows
    ]


def probabilities(X: np.ndarray, heads: list[Head]) -> np.ndarray:
    """(N, D) float32 vectors -> (N, H) float64 probabilities; NaN rows stay NaN."""
    if not heads:
        return np.zeros((len(X), 0))
    W = np.stack([h.weights for h in heads], axis=1).astype(np.float32)
    Z = vector_store.matmul(X, W).astype(np.float64)  # every head in one pass over X
    Z *= np.array([h.scale for h in heads])
    Z += np.array([h.bias for h in heads])
    out = np.empty_like(Z)
    for j, h in enumerate(heads):
        if h.link == "logistic":
            out[:, j] = 1.0 / (1.0 + np.exp(-np.clip(Z[:, j], -Z_CLAMP, Z_CLAMP)))
        else:
            out[:, j] = np.clip(Z[:, j], 0.0, 1.0)
    return out


# -- vectors -------------------------------------------------------------------
def _sidecar(root: Path, encoder: str, part: str, column: str) -> Path:
    return root / "scores" / "_vectors" / safe_name(encoder) / f"{Path(part).stem}.{column}.npy"


def read_vector_part(root: Path, encoder: str, part: str, column: str, dim: int) -> tuple[pa.Array, object]:
    """(ids, (N, dim) rows) of one vector part: a memory-mapped `vector_store.Stored` for a compact
    part; for a part in the old form the raw float32 sidecar (written on first read)."""
    path = root / part
    ids = pq.read_table(path, columns=["coactive_image_id"]).column(0).combine_chunks()
    X = vector_store.open_column(path, column, dim)
    if X is not None and X.shape == (len(ids), dim):
        return ids, X
    side = _sidecar(root, encoder, part, column)
    if side.exists():
        X = np.load(side, mmap_mode="r")
        if X.shape == (len(ids), dim):
            return ids, X
    X = vector_store.read(path, column, dim)
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.parent / f"{TMP_PREFIX}{side.name}"
    with open(tmp, "wb") as fh:
        np.save(fh, X)
    tmp.replace(side)
    return ids, X


def asset_ids(root: Path, asset_parts: list[str]) -> pa.Array:
    if not asset_parts:
        return pa.array([], pa.string())
    chunks = [pq.read_table(root / p, columns=["coactive_image_id"]).column(0) for p in asset_parts]
    return pa.chunked_array([c for ch in chunks for c in ch.chunks], pa.string()).combine_chunks()


def score_parts(root: Path, encoder: str, parts: list[str], column: str, heads: list[Head]) -> list[tuple]:
    """(ids, probabilities) of each vector part for heads over one column: the matrix products,
    here in this process (concepts/ray_scoring.py passes a scorer that runs them on a Ray cluster)."""
    out = []
    with vector_store.one_blas_thread():
        for part in parts:
            vids, X = read_vector_part(root, encoder, part, column, heads[0].dim)
            if len(vids):
                out.append((vids, probabilities(X, heads)))
    return out


# (root, asset parts, encoder, vector parts) whose ids were found equal row for row: part files
# are immutable under their names, so the alignment holds for good and later scorings skip
# reading the asset ids (a tenth of a second per million assets).
_ALIGNED: set[tuple] = set()


def score_assets(con, root: Path, heads: list[Head], asset_parts: list[str],
                 vector_parts: dict[str, list[str]] | None = None,
                 scorer=score_parts) -> tuple[np.ndarray, dict[str, list[str]]]:
    """Probabilities (rows of `asset_parts` in order, one column per head) and the vector parts read.

    Heads are grouped by (encoder, column) so each vector part is read once for
    all of them.  `vector_parts` restricts which parts are read per encoder
    (increments read only the new ones); assets without a vector get NaN.
    """
    rows_of = catalog.part_rows(con, "assets")
    total = sum(int(rows_of.get(p, 0)) for p in asset_parts)
    out = np.full((total, len(heads)), np.nan)
    ids = None
    used: dict[str, list[str]] = {}
    groups: dict[tuple[str, str], list[int]] = {}
    for j, h in enumerate(heads):
        groups.setdefault((h.encoder, h.column), []).append(j)
    for (encoder, column), cols in groups.items():
        parts = vector_parts.get(encoder, []) if vector_parts is not None else \
            catalog.part_paths(con, "vectors", encoder=encoder)
        used[encoder] = list(parts)
        if not total:
            continue
        group = [heads[j] for j in cols]
        scored = scorer(root, encoder, parts, column, group)
        vid_chunks, p_chunks = [s[0] for s in scored], [s[1] for s in scored]
        if not vid_chunks:
            continue
        P = np.concatenate(p_chunks)
        key = (str(root), tuple(asset_parts), encoder, tuple(parts))
        if key in _ALIGNED and len(P) == total:
            out[:, cols] = P
            continue
        vids = pa.chunked_array(vid_chunks, pa.string()).combine_chunks()
        ids = asset_ids(root, asset_parts) if ids is None else ids
        if len(vids) == len(ids) and vids.equals(ids):
            out[:, cols] = P  # ingest writes vectors in asset order: no lookup needed
            _ALIGNED.add(key)
            continue
        pos = pc.index_in(ids, value_set=vids)
        hit = np.flatnonzero(pc.is_valid(pos).to_numpy(zero_copy_only=False))
        if len(hit):
            rows = pos.to_numpy(zero_copy_only=False)[hit].astype(np.int64)
            out[np.ix_(hit, cols)] = P[rows]
    return out, used


# -- cache files -----------------------------------------------------------------
def cache_rows(con, concept: str, version: int) -> list[tuple]:
    return con.execute(
        "SELECT seq, path, asset_parts, vector_parts, row_count FROM catalog.concept_scores "
        "WHERE concept = ? AND version = ? ORDER BY seq",
        [concept, version],
    ).fetchall()


def _prob_table(probs: np.ndarray) -> pa.Table:
    return pa.table({"prob": pa.array(probs, pa.float64(), mask=np.isnan(probs))})


def write_cache(con, root: Path, head: Head, seq: int, probs: np.ndarray, asset_parts: list[str],
                vector_parts: list[str]) -> str:
    """Write one cache file and its catalog row (the caller owns the transaction)."""
    # A file is never rewritten in place: a rolled-back transaction must leave the
    # committed rows pointing at the rows they were aligned with.
    path = root / "scores" / head.concept / f"v{head.version}.parquet"
    if seq or path.exists():
        path = path.with_name(f"v{head.version}-{seq}-{uuid.uuid4().hex[:8]}.parquet")
    # Probabilities barely compress (zstd measured most of a 1M-row write for little); plain pages.
    atomic_write_parquet(_prob_table(probs), path, compression="none")
    rel = str(path.relative_to(root))
    con.execute(
        "INSERT OR REPLACE INTO catalog.concept_scores VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [head.concept, head.version, seq, rel, json.dumps(asset_parts), json.dumps(vector_parts), len(probs), catalog.now()],
    )
    return rel


def drop_cache(con, concept: str, version: int | None = None) -> None:
    if version is None:
        con.execute("DELETE FROM catalog.concept_scores WHERE concept = ?", [concept])
    else:
        con.execute("DELETE FROM catalog.concept_scores WHERE concept = ? AND version = ?", [concept, version])


def materialize(con, root: Path, heads: list[Head], scorer=score_parts) -> dict[tuple[str, int], str]:
    """Score every asset for `heads` and replace their caches (caller owns the transaction)."""
    parts = catalog.part_paths(con, "assets")
    probs, used = score_assets(con, root, heads, parts, scorer=scorer)
    written = {}
    for j, h in enumerate(heads):
        drop_cache(con, h.concept, h.version)
        written[(h.concept, h.version)] = write_cache(con, root, h, 0, probs[:, j], parts, used.get(h.encoder, []))
    return written


def _covered(rows) -> tuple[list[str], set[str]]:
    parts: list[str] = []
    vparts: set[str] = set()
    for r in rows:
        parts += json.loads(r[2])
        vparts |= set(json.loads(r[3]))
    return parts, vparts


def cache_status(con, head: Head, asset_parts: list[str], root: Path | None = None,
                 memo: dict | None = None) -> str:
    """'complete', 'none', 'extend' (new asset parts only) or 'stale'.

    With `root`, a cache whose files someone deleted is 'stale' too: scores/ is
    a cache, and removing it must only cost a rescoring.  `memo` (a dict the caller
    keeps for one transaction) shares the re-embedding check between heads of the
    same coverage: each check scans the catalog's asset and embedding rows.
    """
    rows = cache_rows(con, head.concept, head.version)
    if not rows:
        return "none"
    if root is not None and not all((Path(root) / r[1]).exists() for r in rows):
        return "stale"
    covered, seen = _covered(rows)
    if asset_parts[: len(covered)] != covered:
        return "stale"
    new_vparts = [p for p in catalog.part_paths(con, "vectors", encoder=head.encoder) if p not in seen]
    if new_vparts and covered:
        # Vectors added later for assets already scored (re-embedding) make the cache stale.
        # Hash semi-joins on the two part lists (`catalog.in_list`), the new vector parts'
        # rows first: `list_contains` per row compared every row with the whole list
        # of covered parts (114 ms per head per flush at 1M assets).
        memo = {} if memo is None else memo
        key = (head.encoder, tuple(new_vparts), tuple(covered))
        if key not in memo:
            memo[key] = con.execute(
                "SELECT 1 FROM (SELECT coactive_image_id FROM catalog.embeddings "
                f"WHERE encoder = ? AND {catalog.in_list('part')}) e "
                f"JOIN catalog.assets a USING (coactive_image_id) WHERE {catalog.in_list('a.part')} LIMIT 1",
                [head.encoder, new_vparts, covered],
            ).fetchone() is not None
        if memo[key]:
            return "stale"
    return "complete" if len(covered) == len(asset_parts) else "extend"


def extend(con, root: Path, heads: list[Head]) -> dict[tuple[str, int], bool]:
    """Bring every cached head up to date with the asset parts; return which are complete.

    Part of `refresh` (the caller's transaction): new asset parts are scored
    from the new vector parts only, and many small increments are merged.
    """
    asset_parts = catalog.part_paths(con, "assets")
    complete: dict[tuple[str, int], bool] = {}
    pending: list[Head] = []
    memo: dict = {}
    for h in heads:
        status = cache_status(con, h, asset_parts, root, memo)
        if status == "stale":
            drop_cache(con, h.concept, h.version)
        complete[(h.concept, h.version)] = status == "complete"
        if status == "extend":
            pending.append(h)
    # Heads with the same coverage share one scoring pass.
    by_cover: dict[tuple, list[Head]] = {}
    for h in pending:
        covered, seen = _covered(cache_rows(con, h.concept, h.version))
        by_cover.setdefault((tuple(covered), tuple(sorted(seen)), h.encoder), []).append(h)
    for (covered, seen, encoder), hs in by_cover.items():
        new_parts = asset_parts[len(covered):]
        new_v = [p for p in catalog.part_paths(con, "vectors", encoder=encoder) if p not in set(seen)]
        probs, _ = score_assets(con, root, hs, new_parts, {encoder: new_v})
        for j, h in enumerate(hs):
            rows = cache_rows(con, h.concept, h.version)
            seq = rows[-1][0] + 1
            write_cache(con, root, h, seq, probs[:, j], new_parts, new_v)
            if len(rows) + 1 > COMPACT_AFTER:
                _compact(con, root, h, seq + 1)
            complete[(h.concept, h.version)] = True
    return complete


def _compact(con, root: Path, head: Head, seq: int) -> None:
    rows = cache_rows(con, head.concept, head.version)
    probs = np.concatenate([
        pq.read_table(root / r[1], columns=["prob"]).column(0).to_numpy(zero_copy_only=False).astype(np.float64)
        for r in rows
    ]) if rows else np.zeros(0)
    covered, seen = _covered(rows)
    drop_cache(con, head.concept, head.version)
    write_cache(con, root, head, seq, probs, covered, sorted(seen))


COMBINED_DIR = "_combined"
COMBINED_META = "concept_scores_combined"  # the segment files (a JSON list), as `sweep` reads them
SERVED_META = "concept_scores_served"  # {"asset_parts": [...], "members": [[concept, version], ...]}


def _meta(con, key: str):
    row = con.execute("SELECT value FROM catalog.meta WHERE key = ?", [key]).fetchone()
    return json.loads(row[0]) if row else None


def segment_files(con) -> list[str]:
    """Every segment file (both layers) the committed catalog names."""
    return _meta(con, COMBINED_META) or []


def refresh(con, root: Path, merge: bool = False) -> list[str]:
    """Bring score caches up to date and write the segments the views read.

    The explicit scoring step (writers ask for it through `transaction(...,
    scores=True)` after new asset or vector parts, a new concept version, a
    deletion): stale caches are dropped, caches missing new asset parts are
    extended, and every complete cache is served from the segments.  A change
    that only adds concept columns writes them to the *delta layer* (score
    columns alone, a few bytes per asset) instead of rewriting the base
    segments with their asset columns; `merge` (the background merge after
    such a change, `WarehouseCore`'s) folds the delta into the base.  What it
    settled is recorded in `catalog.meta` for `usable_segments`, so building
    views needs no scoring.  Returns the segment paths (both layers).
    """
    root = Path(root)
    heads = load_heads(con)
    complete = extend(con, root, heads)
    asset_parts = catalog.part_paths(con, "assets")
    total_rows = con.execute(
        "SELECT coalesce(sum(row_count), 0) FROM catalog.parts WHERE kind = 'assets'").fetchone()[0]
    cached = []
    for h in heads:
        rows = cache_rows(con, h.concept, h.version) if complete.get((h.concept, h.version)) else []
        if rows and sum(r[4] for r in rows) == total_rows:
            cached.append(h)
    base, delta = _layers(con, cached, merge)
    prev = _meta(con, SERVED_META) or {}
    encoders = encoder_columns.state(con, prev)
    base_files = combined_segments(con, root, base, asset_parts, encoders=encoders)
    delta_files = combined_segments(con, root, delta, asset_parts, with_assets=False)
    segments = base_files + delta_files
    served = {"asset_parts": asset_parts, "members": [[h.concept, h.version] for h in cached] if segments else [],
              "base_members": [[h.concept, h.version] for h in base], "base": base_files, "delta": delta_files,
              "form": SEGMENT_FORM, "encoders": encoders if base_files else {}}
    con.executemany("INSERT OR REPLACE INTO catalog.meta VALUES (?, ?)",
                    [[COMBINED_META, json.dumps(segments)], [SERVED_META, json.dumps(served)]])
    return segments


def prepare_merge(con, root: Path) -> list[str]:
    """Write the base segments a merge of the delta layer will commit, outside the write lock.

    Segment files are named by their content, so the merge's own `refresh(merge=True)`,
    under the lock, finds them in place and only commits (it writes whatever a change
    committed meanwhile made different).
    """
    served = _meta(con, SERVED_META) or {}
    if not served.get("delta") or served.get("form") != SEGMENT_FORM:
        return []
    by_key = {(h.concept, h.version): h for h in load_heads(con)}
    members = [by_key[tuple(m)] for m in served["members"] if tuple(m) in by_key]
    before = {p.name for p in (Path(root) / "scores" / COMBINED_DIR).glob("*.parquet")}
    return [p for p in combined_segments(con, Path(root), members, served["asset_parts"],
                                         encoders=encoder_columns.state(con, served))
            if Path(p).name not in before]


def discard_unreferenced(con, root: Path, paths: list[str]) -> None:
    """Delete the segment files among `paths` that the committed catalog does not name (a merge
    that did not commit).  Hold the write lock: a writer between finding such a file in place
    and committing its name would otherwise lose it."""
    live = set(segment_files(con))
    for p in paths:
        if p not in live:
            (Path(root) / p).unlink(missing_ok=True)


DELTA_MAX = 8  # concept columns the delta layer holds before a change folds it into the base at once


def _layers(con, cached: list[Head], merge: bool) -> tuple[list[Head], list[Head]]:
    """(base members, delta members) of the next segments.

    The base keeps what its segments already hold while every one of those caches
    is still complete; the columns added since go to the delta.  A dropped base
    member (a stale cache, a deleted concept), rewritten asset parts, `merge`, or
    a full delta put them all in the base: a full rewrite.
    """
    served = _meta(con, SERVED_META) or {}
    if merge or served.get("form") != SEGMENT_FORM or "base_members" not in served:
        return cached, []
    covered = served.get("asset_parts", [])
    if catalog.part_paths(con, "assets")[:len(covered)] != covered:
        return cached, []  # parts rewritten (erasure, compaction): every segment is written anew anyway
    was_base = {tuple(m) for m in served["base_members"]}
    keys = {(h.concept, h.version) for h in cached}
    if not was_base <= keys:
        return cached, []
    base = [h for h in cached if (h.concept, h.version) in was_base]
    delta = [h for h in cached if (h.concept, h.version) not in was_base]
    return (cached, []) if len(delta) > DELTA_MAX else (base, delta)


def delta_layer(con) -> bool:
    """Whether the served segments have a delta layer (a merge would fold it into the base)."""
    return bool((_meta(con, SERVED_META) or {}).get("delta"))


@dataclass
class Served:
    """What the views read for materialised scores: base segments (asset columns and scores),
    delta segments (score columns only, row-aligned with the base), and the (concept, version)s
    they serve right now."""
    base: list[str]
    delta: list[str]
    members: set[tuple[str, int]]


def usable_segments(con, heads: list[Head]) -> Served:
    """The segments and the (concept, version)s they serve right now, from catalog rows only.

    What the last `refresh` recorded holds while the asset parts are the same
    and each member's cache is still complete (re-embedding makes one stale);
    anything else reads its macro until the next refresh.
    """
    none = Served([], [], set())
    rows = dict(con.execute("SELECT key, value FROM catalog.meta WHERE key IN (?, ?)",
                            [COMBINED_META, SERVED_META]).fetchall())
    if COMBINED_META not in rows or SERVED_META not in rows:
        return none
    segments, served = json.loads(rows[COMBINED_META]), json.loads(rows[SERVED_META])
    asset_parts = catalog.part_paths(con, "assets")
    # Another form (segments an earlier release wrote) serves nothing until the refresh a
    # writable open runs replaces them.
    if not segments or served.get("asset_parts") != asset_parts or served.get("form") != SEGMENT_FORM:
        return none
    members = {tuple(m) for m in served.get("members", [])}
    ok = {(h.concept, h.version) for h in heads
          if (h.concept, h.version) in members and cache_status(con, h, asset_parts) == "complete"}
    return Served(served.get("base", []), served.get("delta", []), ok) if ok else none


def served_encoder_columns(con, specs: dict) -> dict[str, dict[str, str]]:
    """{encoder: {column: segment column}} for the encoders whose SQL columns the views' base scan
    (the served base segments) carries with values still right: same spec, same vector parts."""
    rec = (_meta(con, SERVED_META) or {}).get("encoders") or {}
    if not rec or not usable_segments(con, load_heads(con)).base:
        return {}
    out = {}
    for encoder, spec in specs.items():
        r = rec.get(encoder)
        if r and r["sql"] == spec.key() and r["vector_parts"] == catalog.part_paths(con, "vectors", encoder=encoder):
            out[encoder] = r["columns"]
    return out


def combined_segments(con, root: Path, members: list[Head], asset_parts: list[str],
                      with_assets: bool = True, encoders: dict | None = None) -> list[str]:
    """Wide Parquet segments: the asset rows of `asset_parts`, every asset column, the encoders'
    SQL columns (`encoders`, from `encoder_columns.state`), and one column `<concept>_v<N>` per member
    (`with_assets=False`: the score columns alone, the delta layer).

    The views read these segments *instead of* the asset parts, as one scan, so
    DuckDB pushes filters and limits into it and materialises late (a top-k
    reads ids and paths for its k rows only); a query reads only the columns it
    names.  Segments break wherever any member's cache file does, so new asset
    parts add a segment and leave the others as they are; a segment's name
    hashes its form, its members' files and its asset parts.
    """
    if not members or not asset_parts:
        return []
    rows_of = catalog.part_rows(con, "assets")
    offsets = np.concatenate([[0], np.cumsum([rows_of[p] for p in asset_parts])]).astype(np.int64)
    layout = {}  # member -> [(first part index, file, created)]
    bounds = {len(asset_parts)}
    for m in members:
        files, i = [], 0
        for r in con.execute(
            "SELECT path, asset_parts, created_dt FROM catalog.concept_scores WHERE concept = ? AND version = ? "
            "ORDER BY seq", [m.concept, m.version]
        ).fetchall():
            files.append((i, r[0], str(r[2])))
            bounds.add(i)
            i += len(json.loads(r[1]))
        layout[(m.concept, m.version)] = files
    bounds = sorted(bounds)
    loaded: dict[str, pa.Array] = {}
    enc_values = None
    out = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        picks = []
        for m in members:
            start, path, created = [f for f in layout[(m.concept, m.version)] if f[0] <= lo][-1]
            picks.append((f"{m.concept}_v{m.version}", path, created, start))
        form = [SEGMENT_FORM] if with_assets else [SEGMENT_FORM, "delta"]
        if with_assets and encoders:
            form += [[e, st["sql"], st["basis"]] for e, st in sorted(encoders.items())]
        key = hashlib.sha256(json.dumps([*form, picks, asset_parts[lo:hi]]).encode()).hexdigest()[:24]
        seg = root / "scores" / COMBINED_DIR / f"{key}.parquet"
        if not seg.exists():
            for _, path, _, _ in picks:
                if path not in loaded:
                    loaded[path] = pq.read_table(root / path, columns=["prob"]).column(0).combine_chunks()
            if with_assets and encoders and enc_values is None:
                enc_values = encoder_columns.values(con, root, encoders)
            _write_segment(root, seg, asset_parts, range(lo, hi), offsets, picks, loaded, with_assets,
                           (enc_values or []) if with_assets else [])
        out.append(str(seg.relative_to(root)))
    return out


SEGMENT_FORM = 2  # 1: score columns only, positionally joined onto the asset parts; 2: asset columns too
SEGMENT_ROW_GROUP = 122_880  # DuckDB's own row group size: its unit of parallel scanning
_LOW_CARDINALITY = ["dataset", "media_type", "format", "coactive_video_id", "run_id"]


def _write_segment(root: Path, seg: Path, asset_parts: list[str], span: range, offsets: np.ndarray,
                   picks: list[tuple], loaded: dict[str, pa.Array], with_assets: bool = True,
                   enc_values: list[tuple] = ()) -> None:
    """One segment, an asset part at a time (memory stays one part's, whatever the span)."""
    asset_fields = list(ASSET_SCHEMA) if with_assets else []
    enc_fields = [pa.field(col, values.schema.field(name).type)
                  for _, values, names in enc_values for name, col in names]
    schema = pa.schema(asset_fields + enc_fields + [pa.field(name, pa.float32()) for name, *_ in picks])
    # Plain pages: probabilities and ids do not compress, and plain pages are the cheapest to
    # write and to scan (paths would compress; they are read for a query's few rows only);
    # the few repeating columns keep a dictionary.
    with atomic_parquet_writer(seg, schema, compression="none", use_dictionary=_LOW_CARDINALITY) as writer:
        for i in span:
            n = int(offsets[i + 1] - offsets[i])
            cols = []
            if with_assets:
                assets = pq.read_table(root / asset_parts[i])
                cols = [assets.column(f.name).cast(f.type) if f.name in assets.column_names
                        else pa.nulls(n, f.type) for f in ASSET_SCHEMA]
                ids = assets.column("coactive_image_id").combine_chunks()
                for vids, values, names in enc_values:
                    # Each asset's own vector's values; NULL for an asset without one, as the LEFT JOIN
                    # reads.  Ingest writes vectors in asset order, so the rows at the same offsets
                    # usually are the asset's: no lookup then.
                    lo = int(offsets[i])
                    if lo + n <= len(vids) and vids.slice(lo, n).equals(ids):
                        cols += [values.column(name).slice(lo, n) for name, _ in names]
                        continue
                    pos = pc.index_in(ids, value_set=vids)
                    cols += [values.column(name).take(pos) for name, _ in names]
            for _, path, _, start in picks:
                # float32 halves what every query reads; the per-version files keep float64.
                cols.append(loaded[path].slice(int(offsets[i] - offsets[start]), n).cast(pa.float32()))
            writer.write_table(pa.Table.from_arrays(cols, schema=schema), row_group_size=SEGMENT_ROW_GROUP)


def _newer(path: Path, since: float | None) -> bool:
    if since is None:
        return False
    try:
        return path.stat().st_mtime >= since
    except OSError:
        return False


def sweep(con, root: Path, min_age_s: float | None = None, keep: set[str] = frozenset()) -> int:
    """Delete score files nothing references (dropped or compacted caches, replaced combined segments).

    Call after a commit, holding the warehouse write lock, so no writer is between
    writing a file and committing the row that references it.  A file goes as soon
    as no reader that could read it is alive (`readers`: a relation handed out
    before the change, a running query over older view definitions).  A number
    `min_age_s` forces: every unreferenced file older than that goes, whoever reads it.
    """
    import time

    from . import readers

    known = {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()}
    base = root / "scores"
    removed = 0
    if not base.exists():
        return 0
    known |= set(segment_files(con))
    dead = []
    for p in base.glob("*/*.parquet"):
        if p.parent.name.startswith("_") and p.parent.name != COMBINED_DIR:
            continue
        rel = str(p.relative_to(root))
        if rel not in known and rel not in keep:
            dead.append(rel)
    if min_age_s is None:
        # A writer's temporary is its own until the rename (open removes a killed writer's), and so
        # is what a writer outside the lock wrote since it began (`readers.writing`).
        since = readers.writing_since(root)
        dead = [r for r in dead if not Path(r).name.startswith(TMP_PREFIX) and not _newer(root / r, since)]
        doomed = readers.unneeded(root, dead)
    else:
        cutoff = time.time() - min_age_s
        doomed = []
        for rel in dead:
            try:
                if (root / rel).stat().st_mtime <= cutoff:
                    doomed.append(rel)
            except OSError:
                pass
    for rel in doomed:
        try:
            (root / rel).unlink()
            removed += 1
        except OSError:
            pass
    return removed
