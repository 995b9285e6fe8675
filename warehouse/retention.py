"""Retention of what the warehouse keeps only for a while: uploaded files nothing references any more.

`uploads/` holds files sent over HTTP (ingest batches under `uploads/<batch>/`,
moderated items under `uploads/moderation/`, by content hash).  A file stays
while an asset or a video row names it, or while a job or moderation task that
has not finished names it in its parameters; otherwise it is removed once it is
older than the grace period (`uploads_grace_s`), which covers the moment between
saving an upload and committing the job that will read it.  Runs on every
writable open and after every ingest run.  (Query results expiry and erasure
are `warehouse/erasure*`'s.)
"""
from __future__ import annotations

import time
from pathlib import Path

from .jobs import FINAL


def _referenced(con) -> tuple[set[str], str]:
    """(paths named by asset and video rows, the text of every unfinished job's and task's parameters)."""
    names = {r[0] for r in con.execute("SELECT DISTINCT path FROM catalog.assets").fetchall()}
    names |= {r[0] for r in con.execute("SELECT DISTINCT path FROM catalog.videos").fetchall()}
    final = list(FINAL)
    texts = [r[0] or "" for r in con.execute(
        "SELECT CAST(params AS VARCHAR) FROM catalog.jobs WHERE NOT list_contains(?, status)", [final]).fetchall()]
    texts += [r[0] or "" for r in con.execute(
        "SELECT CAST(request AS VARCHAR) FROM catalog.moderation_tasks WHERE NOT list_contains(?, status)",
        [final]).fetchall()]
    return names, "\n".join(texts)


def sweep_uploads(con, root: Path, grace_s: float | None = None) -> list[Path]:
    """Remove unreferenced upload files older than `grace_s` (the setting when None); return them."""
    if grace_s is None:
        from .settings import current

        grace_s = current().uploads_grace_s
    base = Path(root) / "uploads"
    if not base.exists():
        return []
    names, pending = _referenced(con)
    cutoff = time.time() - grace_s
    removed = []
    for p in sorted(base.rglob("*")):
        if not p.is_file() or str(p) in names or str(p) in pending:
            continue
        try:
            if p.stat().st_mtime > cutoff:
                continue
            p.unlink()
            removed.append(p)
        except OSError:
            pass
    for d in sorted((d for d in base.rglob("*") if d.is_dir()), key=lambda d: -len(d.parts)):
        try:
            d.rmdir()  # only empty ones go
        except OSError:
            pass
    return removed
