"""Decisions: one row per verdict in `catalog.moderation_decisions`, and the current status they add up to.

`decided_by` is `model` or `user`.  A person's decision (a manual override, or
feedback) outranks every model decision, so re-moderating never undoes it;
responses show both.  A person's row records `model_status`, the model verdict
it replaces (for the overturn rate).  `pending` marks a stored subject queued
for an asynchronous run until that run decides.
"""
from __future__ import annotations

import json

from warehouse.errors import Invalid
from warehouse import catalog

from ..policy import Policy

STATUSES = ("approved", "review", "rejected")
PENDING = "pending"  # queued for an asynchronous run, not decided yet


def insert(con, subject_id: str, kind: str, status: str, reasons: list, pol: Policy | None, decided_by: str,
           user: str | None = None, comment: str | None = None, task_id: str | None = None) -> None:
    """Append one decision on `con` (the caller holds the write lock and owns any transaction)."""
    model = None
    if decided_by == "user":
        row = con.execute(
            "SELECT status FROM catalog.moderation_decisions WHERE subject_id = ? AND decided_by = 'model' "
            "AND status <> ? ORDER BY created_dt DESC, seq DESC LIMIT 1", [subject_id, PENDING]).fetchone()
        model = row[0] if row else None
    con.execute(
        "INSERT INTO catalog.moderation_decisions (seq, subject_id, subject_kind, status, reasons, policy, "
        "policy_version, policy_spec, decided_by, user_name, comment, task_id, created_dt, model_status) "
        "VALUES (nextval('catalog.moderation_decision_seq'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [subject_id, kind, status, json.dumps(reasons, default=str), pol.name if pol else None,
         pol.version if pol else None, pol.spec() if pol else None, decided_by, user, comment, task_id,
         catalog.now(), model])


def record(wh, *args, **kw) -> None:
    """`insert` as its own transaction; `moderation_status` reads these rows, so the change counter moves."""
    with wh.transaction() as tx:
        tx.data_changed()
        insert(tx.con, *args, **kw)


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    return status


def override_of(con, subject_id: str) -> dict | None:
    """The newest person's decision on a subject, or None."""
    row = con.execute(
        "SELECT status, user_name, comment, created_dt FROM catalog.moderation_decisions "
        "WHERE subject_id = ? AND decided_by = 'user' ORDER BY created_dt DESC, seq DESC LIMIT 1",
        [subject_id]).fetchone()
    if row is None:
        return None
    return {"status": row[0], "user": row[1], "comment": row[2], "decided_dt": row[3]}


def with_override(con, res: dict) -> dict:
    """A model result with the subject's current status: a person's decision, if any, wins."""
    out = dict(res)
    ov = override_of(con, res["subject_id"])
    out["override"] = ov
    out["status"] = ov["status"] if ov else res["model_status"]
    out["decided_by"] = "user" if ov else "model"
    return out


def history(con, subject_id: str, kind: str) -> dict:
    """The current status of an asset or video (override first) with its history, newest first."""
    rows = con.execute(
        "SELECT seq, status, reasons, policy, policy_version, decided_by, user_name, comment, task_id, created_dt, "
        "model_status, policy_spec FROM catalog.moderation_decisions WHERE subject_id = ? ORDER BY created_dt DESC, seq DESC",
        [subject_id]).fetchall()
    keys = ["seq", "status", "reasons", "policy", "policy_version", "decided_by", "user", "comment", "task_id",
            "decided_dt", "model_status", "policy_spec"]
    hist = [dict(zip(keys, r)) for r in rows]
    for h in hist:
        h["reasons"] = json.loads(h["reasons"]) if h["reasons"] else []
    current = next((h for h in hist if h["decided_by"] == "user"), hist[0] if hist else None)
    return {"subject_id": subject_id, "subject_kind": kind,
            "status": current["status"] if current else None,
            "decided_by": current["decided_by"] if current else None,
            "history": hist}
