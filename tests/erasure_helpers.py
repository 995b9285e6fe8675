"""Shared by tests/test_erasure*.py: a small warehouse to erase from, answers to compare, residue scans."""
from __future__ import annotations

import shutil
import types
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

PHOTOS = ["chelsea", "coffee", "astronaut", "rocket", "horse", "moon", "camera", "coins"]


def build_template(base: Path, photo_dir: Path, n_photos: int | None = None) -> Path:
    """photos (several small parts) + one 3-keyframe video in 'photos', two photos in 'other',
    concept 'cat' materialised, a label, a moderator's decision and thumbnails of every asset."""
    from videogen import make_video
    from pixql import Warehouse
    from concepts.moderation import Moderator

    names = sorted(p.name for p in photo_dir.iterdir())
    main = [n for n in names if n.split(".")[0] in PHOTOS[:6]] if n_photos is None else names[:n_photos]
    other = [n for n in names if n.split(".")[0] in PHOTOS[6:]] if n_photos is None else []
    src = base / "src"
    for sub, files in (("photos", main), ("other", other)):
        (src / sub).mkdir(parents=True, exist_ok=True)
        for n in files:
            shutil.copy(photo_dir / n, src / sub / n)
    if n_photos is None:
        make_video(src / "photos" / "clip.mp4", seconds=3, rate=10, width=160, height=120)
    root = base / "wh"
    wh = Warehouse.open(root)
    try:
        wh.ingest([str(src / "photos")], dataset="photos", batch_size=2, part_rows=2, progress=False,
                  video_options={"fps": 1.0})
        if other:
            wh.ingest([str(src / "other")], dataset="other", progress=False)
        wh.create_concept("cat", prompts=["a photo of a cat"])
        ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table ORDER BY path").fetchall()]
        wh.label("cat", positive=ids[:2], negative=ids[2:4], retrain=False)
        mod = Moderator(wh)
        for i in ids[:3]:
            mod.override(i, "rejected", comment="reported by a user")
        from api.server.routers.assets import thumbnail_bytes

        state = types.SimpleNamespace(wh=wh, cursor=wh.cursor)
        for i in ids:
            thumbnail_bytes(state, i, 64)
    finally:
        wh.close()
    return base


def shared_template(tmp_path_factory, photo_dir) -> Path:
    """One template per test session, whichever erasure test file asks first (building it is the slow part)."""
    base = tmp_path_factory.getbasetemp() / "erasure-template"
    if not (base / "done").exists():
        shutil.rmtree(base, ignore_errors=True)
        base.mkdir()
        build_template(base, photo_dir)
        (base / "done").touch()
    return base


def copy_template(template: Path, dest: Path) -> Path:
    shutil.copytree(template / "wh", dest)
    return dest


def answers(wh, skip: set[str] = frozenset()) -> dict:
    """What queries answer for every asset not in `skip`: rows, vectors, concept probabilities, videos."""
    rows = [r for r in wh.sql("SELECT coactive_image_id, dataset, path, media_type, width, height, "
                              "round(cat_prob, 6), round(cat_latest_prob, 6) FROM coactive_table_adv "
                              "ORDER BY coactive_image_id").fetchall() if r[0] not in skip]
    vecs = {r[0]: np.asarray(r[1], np.float32).tobytes()
            for r in wh.sql("SELECT coactive_image_id, probs FROM pixql_internal.vectors_imagenet_lite0").fetchall()
            if r[0] not in skip}
    videos = sorted(r for r in wh.sql("SELECT coactive_video_id, path FROM coactive_videos").fetchall()
                    if r[0] not in skip)
    return {"rows": rows, "vectors": vecs, "videos": videos}


def needles_of(wh, ids: list[str]) -> dict[str, list[bytes]]:
    """What must not survive an erasure of `ids`: ids, paths, pixel runs, vector bytes."""
    out: dict[str, list[bytes]] = {"id": [], "path": [], "pixels": [], "vector": []}
    for aid in ids:
        path, video = wh.sql("SELECT path, coactive_video_id FROM coactive_table_adv WHERE coactive_image_id = ?",
                             [aid]).fetchone()
        out["id"].append(aid.encode())
        if video:
            out["id"].append(video.encode())
        out["path"].append(path.encode())
        data = Path(path).read_bytes()
        out["pixels"].append(data[len(data) // 2: len(data) // 2 + 48])  # a run of the stored file
        thumb = wh.root / "thumbnails" / f"{aid}-64.jpg"
        assert thumb.is_file()
        t = thumb.read_bytes()
        out["pixels"].append(t[-52:-4])  # a run of its thumbnail's scan data (its headers are any JPEG's)
        for vec in wh.sql("SELECT probs, features FROM pixql_internal.vectors_imagenet_lite0 "
                          "WHERE coactive_image_id = ?", [aid]).fetchone():
            out["vector"].append(np.asarray(vec, np.float32).tobytes()[:64])
    return out


def _text_needles(needles: dict) -> list[str]:
    return [b.decode() for b in needles["id"] + needles["path"]]


def scan(root: Path, needles: dict, tmp: Path) -> list[str]:
    """Every place under `root` a needle is found, outside the tombstone table.

    Raw bytes of every file; decoded text and vectors of every Parquet file; every
    text column of every table of the database; and the bytes of a copy of the
    database with the tombstone table emptied and vacuumed.
    """
    from warehouse.erasure_vacuum import vacuum

    found = []
    raw = [b for k in ("path", "pixels", "vector") for b in needles[k]]
    texts = _text_needles(needles)
    vectors = set(needles["vector"])
    for p in root.rglob("*"):
        if not p.is_file():
            continue
        data = p.read_bytes()
        for b in raw + ([] if p.name.startswith("pixql.duckdb") else [n for n in needles["id"]]):
            if b in data:
                found.append(f"bytes of {b[:24]!r} in {p.relative_to(root)}")
        if p.suffix == ".parquet":
            t = pq.read_table(p)
            for name in t.column_names:
                col = t.column(name)
                if pa.types.is_string(col.type):
                    vals = set(col.to_pylist())
                    found += [f"{n} in {p.relative_to(root)}:{name}" for n in texts if n in vals]
                elif pa.types.is_fixed_size_list(col.type):
                    for v in col.to_pylist():
                        if np.asarray(v, np.float32).tobytes()[:64] in vectors:
                            found.append(f"a vector in {p.relative_to(root)}:{name}")
    tmp.mkdir(parents=True, exist_ok=True)
    copy = tmp / "pixql.duckdb"
    shutil.copy(root / "pixql.duckdb", copy)
    con = duckdb.connect(str(copy))
    cols = con.execute("SELECT schema_name, table_name, column_name FROM duckdb_columns() WHERE NOT internal "
                       "AND data_type IN ('VARCHAR', 'JSON') AND table_name NOT IN (SELECT view_name FROM duckdb_views())"
                       ).fetchall()
    for schema, table, col in cols:
        if (schema, table) == ("catalog", "tombstones"):
            continue
        for n in texts:
            if con.execute(f'SELECT count(*) FROM "{schema}"."{table}" WHERE contains(CAST("{col}" AS VARCHAR), ?)',
                           [n]).fetchone()[0]:
                found.append(f"{n} in {schema}.{table}.{col}")
    con.execute("DELETE FROM catalog.tombstones")
    con.close()
    vacuum(tmp)  # `tmp` holds the copy under the warehouse's file name
    data = (tmp / "pixql.duckdb").read_bytes()
    found += [f"bytes of {b[:24]!r} in the database" for k in needles for b in needles[k] if b in data]
    return found
