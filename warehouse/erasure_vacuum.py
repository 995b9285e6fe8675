"""`pixql vacuum`: rewrite `pixql.duckdb` into a fresh file so deleted values leave its bytes.

DuckDB marks the blocks of deleted rows free and reuses them later; until then
the old values stay in the file (and, before a CHECKPOINT, in the WAL).  Vacuum
CHECKPOINTs, copies the live database (`COPY FROM DATABASE`: tables, views,
macros, sequences) into a new file beside it, and renames it over the old one
while still holding the old file open (DuckDB's lock), so no other process can
open the old file in between.  A kill leaves either the old file (the
`.tmp-` copy is swept on the next open) or the new one.
"""
from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import duckdb

from .errors import Conflict
from .storage import TMP_PREFIX, Layout, _fsync_dir


def vacuum(root: str | os.PathLike) -> dict:
    """Rewrite the database file of the warehouse at `root`; the warehouse must not be open elsewhere."""
    layout = Layout(root)
    db = layout.db_path
    if not db.exists():
        raise Conflict(f"no warehouse at {layout.root}")
    before = db.stat().st_size
    started = time.perf_counter()
    try:
        con = duckdb.connect(str(db))
    except duckdb.IOException as e:
        raise Conflict(f"cannot vacuum while another process holds the warehouse (stop `pixql serve` first): {e}") from None
    tmp = db.with_name(f"{TMP_PREFIX}vacuum-{uuid.uuid4().hex[:8]}-{db.name}")
    try:
        con.execute("CHECKPOINT")
        name = con.execute("SELECT current_database()").fetchone()[0]
        con.execute(f"ATTACH '{_q(tmp)}' AS pixql_vacuum")
        con.execute(f'COPY FROM DATABASE "{name}" TO pixql_vacuum')
        con.execute("DETACH pixql_vacuum")
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        Path(f"{tmp}.wal").unlink(missing_ok=True)
        # Renamed while `con` still holds the old file: nobody can open it in between.
        os.replace(tmp, db)
        _fsync_dir(db.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return {"bytes_before": before, "bytes_after": db.stat().st_size,
            "seconds": round(time.perf_counter() - started, 3)}


def _q(p: Path) -> str:
    return str(p).replace("'", "''")
