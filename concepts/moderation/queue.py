"""The moderation queue: the one query behind `GET /api/v1/moderation`, `pixql queue` and the review page.

Assets and videos by their current status (`pixql_internal.moderation_latest`,
where a person's decision outranks every model decision), newest decision
first, filtered by status, dataset, the policy that decided, the category that
triggered and an explicit list of subject ids.  Each row also carries the
newest *model* decision (its reasons name the categories that triggered, which
a later manual override does not) and, for a video, its first keyframe.
`select` returns the rows; `page` is the API's shape of them; the review page
(`api/web/queue.py`) shapes the same rows its own way.
"""
from __future__ import annotations

import json

from warehouse.errors import Invalid
from .decisions import PENDING, STATUSES

QUEUE_STATUSES = (*STATUSES, PENDING)

_MODEL_LATEST = """SELECT subject_id, reasons, policy, policy_version FROM catalog.moderation_decisions
    WHERE decided_by = 'model'
    QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY created_dt DESC, seq DESC) = 1"""

# Callers that need neither the model's reasons nor a policy or category filter join this
# empty relation instead: the window over every model decision doubles the query's time.
_NO_MODEL = ("SELECT NULL::VARCHAR AS subject_id, NULL::VARCHAR AS reasons, NULL::VARCHAR AS policy, "
             "NULL::INTEGER AS policy_version WHERE false")

_FROM = """FROM pixql_internal.moderation_latest l
    LEFT JOIN ({model}) m ON m.subject_id = l.subject_id
    LEFT JOIN pixql_internal.assets a ON a.coactive_image_id = l.subject_id
    LEFT JOIN catalog.videos v ON v.coactive_video_id = l.subject_id
    WHERE (CAST(? AS VARCHAR) IS NULL OR l.status = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR coalesce(a.dataset, v.dataset) = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR coalesce(m.policy, l.policy) = ?)
      AND (CAST(? AS VARCHAR) IS NULL
           OR list_contains(json_extract_string(m.reasons, '$[*].category'), ?)
           OR list_contains(json_extract_string(m.reasons, '$[*].parent'), ?))
      AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(?, l.subject_id))"""

_COLUMNS = ("subject_id", "subject_kind", "status", "reasons", "policy", "policy_version", "decided_by", "user",
            "comment", "decided_dt", "model_reasons", "model_policy", "model_policy_version", "path", "dataset",
            "media_type", "keyframe_time_ms", "first_keyframe_id")


def select(con, status: str | None = None, dataset: str | None = None, policy: str | None = None,
           category: str | None = None, subject_ids: list[str] | None = None, offset: int = 0,
           limit: int = 50, with_model: bool = True) -> tuple[int, list[dict]]:
    """(total, rows) of the queue; `reasons` are parsed, `model_reasons` are the newest model decision's
    (empty, with `model_policy` None, when `with_model` is off and no policy or category filters)."""
    if status is not None and status not in QUEUE_STATUSES:
        raise Invalid(f"status must be one of {', '.join(QUEUE_STATUSES)}, got {status!r}")
    args = [status, status, dataset, dataset, policy, policy, category, category, category, subject_ids, subject_ids]
    from_ = _FROM.format(model=_MODEL_LATEST if with_model or policy or category else _NO_MODEL)
    total = con.execute(f"SELECT count(*) {from_}", args).fetchone()[0]
    rows = con.execute(
        f"""SELECT l.subject_id, l.subject_kind, l.status, l.reasons, l.policy, l.policy_version, l.decided_by,
                   l.user_name, l.comment, l.created_dt, m.reasons, m.policy, m.policy_version,
                   coalesce(a.path, v.path), coalesce(a.dataset, v.dataset), a.media_type, a.keyframe_time_ms,
                   (SELECT min_by(k.coactive_image_id, k.keyframe_index) FROM pixql_internal.assets k
                     WHERE l.subject_kind = 'video' AND k.coactive_video_id = l.subject_id)
            {from_} ORDER BY l.created_dt DESC, l.seq DESC LIMIT ? OFFSET ?""",
        args + [limit, offset],
    ).fetchall()
    out = []
    for r in rows:
        row = dict(zip(_COLUMNS, r))
        row["reasons"] = json.loads(row["reasons"]) if row["reasons"] else []
        row["model_reasons"] = json.loads(row["model_reasons"]) if row["model_reasons"] else []
        out.append(row)
    return total, out


def envelope(status: str | None, total: int, offset: int, limit: int, items: list[dict]) -> dict:
    end = offset + len(items)
    return {"status": status, "total": total, "offset": offset, "limit": limit,
            "next_offset": end if end < total else None, "items": items}


def page(con, status: str | None = None, offset: int = 0, limit: int = 50, dataset: str | None = None) -> dict:
    """The API's queue page: each item's current decision, its path and dataset, and a thumbnail URL."""
    total, rows = select(con, status, dataset, offset=offset, limit=limit, with_model=False)
    items = []
    for r in rows:
        thumb_id = r["subject_id"] if r["subject_kind"] == "asset" else r["first_keyframe_id"]
        items.append({
            "subject_id": r["subject_id"], "subject_kind": r["subject_kind"], "status": r["status"],
            "reasons": r["reasons"], "policy": r["policy"], "policy_version": r["policy_version"],
            "decided_by": r["decided_by"], "user": r["user"], "comment": r["comment"],
            "decided_dt": r["decided_dt"], "path": r["path"], "dataset": r["dataset"],
            "thumbnail_url": f"/api/v1/assets/{thumb_id}/thumbnail" if thumb_id else None,
        })
    return envelope(status, total, offset, limit, items)
