"""SIGKILL at every point of an erasure, 20 times, each followed by a re-run.

The delete runs in a subprocess killed at a random one of
`erasure_files.CRASH_POINTS` (`PIXQL_ERASURE_CRASH_AT`).  After each kill a
read-only open (which repairs nothing) must answer either the old or the new
state for every query (rows, vectors, concept scores, videos), never a mix or
a missing file; re-running the delete finishes it, and then no file is left
that the catalog does not reference.
"""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from erasure_helpers import answers, copy_template, shared_template
from warehouse.erasure_files import CRASH_ENV, CRASH_POINTS

REPO = Path(__file__).resolve().parent.parent
KILLS = 20

_DELETE = """
import sys
from warehouse.core import WarehouseCore
from warehouse.erasure import erase
from warehouse.erasure_select import select
wh = WarehouseCore.open(sys.argv[1])
erase(wh, select(wh.cursor(), image_id=sys.argv[2]), reason="crash loop")
wh.close()
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory, photo_dir):
    return shared_template(tmp_path_factory, photo_dir)


def _core(root, read_only=False):
    from warehouse.core import WarehouseCore

    return WarehouseCore.open(root, read_only=read_only)


def _orphans(root: Path) -> list[str]:
    """Files under the root that nothing committed references, and unfinished journal rows."""
    from warehouse import concept_cache, encoder_columns

    wh = _core(root, read_only=True)
    try:
        con = wh.cursor()
        parts = {r[0] for r in con.execute("SELECT path FROM catalog.parts").fetchall()}
        scores = {r[0] for r in con.execute("SELECT path FROM catalog.concept_scores").fetchall()}
        row = con.execute("SELECT value FROM catalog.meta WHERE key = ?", [concept_cache.COMBINED_META]).fetchone()
        scores |= set(json.loads(row[0])) if row else set()
        stems = {Path(p).stem for p in parts}
        journal = con.execute("SELECT count(*) FROM catalog.erasure_journal").fetchone()[0]
        assets = {r[0] for r in con.execute("SELECT coactive_image_id FROM catalog.assets").fetchall()}
    finally:
        wh.close()
    out = [f"journal rows: {journal}"] if journal else []
    for p in root.rglob("*"):
        rel = str(p.relative_to(root))
        if not p.is_file() or p.name.startswith("pixql.duckdb"):
            continue
        if p.name.startswith(".tmp-"):
            out.append(rel)
        elif rel.startswith("datasets/") and rel not in parts:
            out.append(rel)
        elif rel.startswith(("scores/_vectors/", f"scores/{encoder_columns.ENCODER_DIR}/")):  # derived from a part
            if p.name.split(".", 1)[0] not in stems:
                out.append(rel)
        elif rel.startswith("scores/") and rel not in scores:
            out.append(rel)
        elif rel.startswith("thumbnails/") and p.name.rsplit("-", 1)[0] not in assets:
            out.append(rel)
    return out


def test_sigkill_anywhere_in_a_delete_then_rerun(template, tmp_path):
    rng = random.Random(13)
    full = None
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    points = list(CRASH_POINTS) * 3
    rng.shuffle(points)
    root, erased, copies, kills = None, set(), 0, 0
    while kills < KILLS:
        if root is None:
            copies += 1
            root = copy_template(template, tmp_path / f"wh{copies}")
            erased = set()
            wh = _core(root)
            full = answers(wh)
            candidates = [r[0] for r in wh.sql("SELECT coactive_image_id FROM coactive_table_adv "
                                               "WHERE media_type = 'image' ORDER BY path").fetchall()]
            wh.close()
        if not candidates:
            root = None
            continue
        target = candidates.pop(0)
        point = points[kills % len(points)]
        proc = subprocess.run([sys.executable, "-c", _DELETE, str(root), target], env={**env, CRASH_ENV: point},
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == -9, f"not killed at {point}: {proc.returncode} {proc.stderr[-2000:]}"
        kills += 1
        # What a reader sees before anything repairs the warehouse: old or new, whole.
        wh = _core(root, read_only=True)
        try:
            seen = answers(wh)
            tomb = wh.sql("SELECT count(*) FROM catalog.tombstones WHERE subject_id = ?", [target]).fetchone()[0]
        finally:
            wh.close()
        old = _minus(full, erased)
        new = _minus(full, erased | {target})
        assert seen in (old, new), f"a mix after a kill at {point}"
        assert tomb == (1 if seen == new else 0)
        # The re-run completes it (or finds it done), and leaves nothing behind.
        wh = _core(root)
        from warehouse.erasure import erase
        from warehouse.erasure_select import select

        report = erase(wh, select(wh.cursor(), image_id=target), reason="crash loop")
        assert (report.removed.get("assets", 0) == 1) == (seen == old)
        erased.add(target)
        assert answers(wh) == _minus(full, erased)
        assert wh.sql("SELECT count(*) FROM catalog.tombstones WHERE subject_id = ?", [target]).fetchone()[0] == 1
        wh.close()
        assert _orphans(root) == [], f"after a kill at {point}"
    assert kills == KILLS


def _minus(full: dict, ids: set[str]) -> dict:
    return {"rows": [r for r in full["rows"] if r[0] not in ids],
            "vectors": {k: v for k, v in full["vectors"].items() if k not in ids},
            "videos": full["videos"]}
