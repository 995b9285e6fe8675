"""`catalog.tombstones`: what an erasure removed, kept without content, and the block list.

One row per erased subject (an image, a keyframe, a video, a dataset): its id,
its content hash, when, who, why, and `block`.  A `block` tombstone is the
moderation team's hash list of known-bad content: ingest (`ingest/pipeline.py`),
HTTP uploads (`api/server/routers/ingestion.py`) and moderation intake refuse
the same bytes again, with the reason recorded here.  No path, no pixels, no
vector is ever stored in this table.
"""
from __future__ import annotations

import uuid

from . import catalog
from .errors import Blocked

COLUMNS = ["tombstone_id", "erasure_id", "kind", "subject_id", "sha256", "block", "reason", "created_by",
           "created_dt"]


def record(con, erasure_id: str, subjects: list[tuple[str, str, str | None]], block: bool, reason: str | None,
           who: str | None) -> dict[str, str]:
    """Insert one tombstone per (kind, subject_id, sha256); return subject_id -> tombstone_id."""
    now = catalog.now()
    rows, ids = [], {}
    for kind, subject, sha in subjects:
        tid = uuid.uuid4().hex
        ids[subject] = tid
        rows.append(dict(tombstone_id=tid, erasure_id=erasure_id, kind=kind, subject_id=subject, sha256=sha,
                         block=bool(block), reason=reason, created_by=who, created_dt=now))
    catalog.insert(con, "tombstones", rows)
    return ids


def block_reasons(con) -> dict[str, str]:
    """sha256 -> the reason of its (latest) block tombstone."""
    rows = con.execute("SELECT sha256, arg_max(coalesce(reason, 'no reason given'), created_dt) "
                       "FROM catalog.tombstones WHERE block AND sha256 IS NOT NULL GROUP BY sha256").fetchall()
    return {r[0]: r[1] for r in rows}


def blocked_message(sha256: str, reason: str) -> str:
    return f"content {sha256[:16]}... was erased and is blocked from coming back: {reason}"


def check(con, sha256: str | None) -> None:
    """Raise `Blocked` (HTTP 403, with the reason) if a block tombstone holds this hash."""
    if not sha256:
        return
    row = con.execute("SELECT coalesce(reason, 'no reason given') FROM catalog.tombstones WHERE block AND sha256 = ? "
                      "ORDER BY created_dt DESC LIMIT 1", [sha256]).fetchone()
    if row:
        raise Blocked(blocked_message(sha256, row[0]))


def erased(con, subject_id: str) -> dict | None:
    """The tombstone of an erased id, if it was erased."""
    row = con.execute(f"SELECT {', '.join(COLUMNS)} FROM catalog.tombstones WHERE subject_id = ? "
                      "ORDER BY created_dt DESC LIMIT 1", [subject_id]).fetchone()
    return dict(zip(COLUMNS, row)) if row else None


def listing(con, limit: int = 1000) -> list[dict]:
    rows = con.execute(f"SELECT {', '.join(COLUMNS)} FROM catalog.tombstones ORDER BY created_dt DESC LIMIT ?",
                       [limit]).fetchall()
    return [dict(zip(COLUMNS, r)) for r in rows]
