"""Retention of query results: `results/<query_id>.parquet` expire after `results_retention_days`.

An expired result goes the way an erased one does (`warehouse/erasure.py`): the
query record's `withdrawn` column says why (the API answers 410 Gone with it),
then the file is removed.  The record is marked first, so a kill in between
leaves a withdrawn record whose file the next sweep removes.  `QueryEngine`
sweeps when it starts and then every `SWEEP_EVERY_S` seconds.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from . import catalog

SWEEP_EVERY_S = 600.0
FINAL = ("Complete", "Error", "Stopped")


def expired_reason(days: float) -> str:
    return f"expired: results are kept {days:g} days (setting results_retention_days)"


def expire_results(write, read_con, root: Path, days: float) -> int:
    """Withdraw and remove results older than `days`; `write(sql, args)` commits one statement.

    Returns how many records were marked expired.  `days <= 0` keeps results forever.
    """
    marked = 0
    if days > 0:
        cutoff = catalog.now() - timedelta(days=days)
        marked = len(read_con.execute(
            "SELECT query_id FROM catalog.queries WHERE withdrawn IS NULL AND list_contains(?, status) "
            "AND coalesce(end_dt, created_dt) < ?", [list(FINAL), cutoff]).fetchall())
        if marked:
            write("UPDATE catalog.queries SET withdrawn = ? WHERE withdrawn IS NULL AND list_contains(?, status) "
                  "AND coalesce(end_dt, created_dt) < ?", [expired_reason(days), list(FINAL), cutoff])
    gone = {r[0] for r in read_con.execute(
        "SELECT query_id FROM catalog.queries WHERE withdrawn IS NOT NULL").fetchall()}
    results = Path(root) / "results"
    if results.exists():
        for p in results.glob("*.parquet"):
            if p.stem in gone:
                p.unlink(missing_ok=True)
    return marked
