"""The review queue as the page lists it: `GET /api/v1/moderation`'s items, filterable by category and policy.

The moderation API lists the queue by status and dataset.  Reviewers also
filter by the category that triggered and the policy that decided, and for a
video they look at its worst keyframe, so this reads the same decisions
(`pixql_internal.moderation_latest`, where a moderator's override outranks the
model) and adds, per item, the model's latest triggering categories and, for
videos, the keyframe where the top category scored highest.  Read-only: every
decision the page makes goes through `PUT /api/v1/assets/{id}/moderation`.
"""
from __future__ import annotations

import json

from warehouse.errors import Invalid

STATUSES = ("approved", "rejected", "review")

# The newest model decision per subject: its reasons name the categories that
# triggered, which a later manual override (reasons = the moderator's comment) does not.
_MODEL_LATEST = """SELECT subject_id, reasons, policy, policy_version FROM catalog.moderation_decisions
    WHERE decided_by = 'model'
    QUALIFY row_number() OVER (PARTITION BY subject_id ORDER BY created_dt DESC, seq DESC) = 1"""

_FROM = f"""FROM pixql_internal.moderation_latest l
    LEFT JOIN ({_MODEL_LATEST}) m ON m.subject_id = l.subject_id
    LEFT JOIN pixql_internal.assets a ON a.coactive_image_id = l.subject_id
    LEFT JOIN catalog.videos v ON v.coactive_video_id = l.subject_id
    WHERE (CAST(? AS VARCHAR) IS NULL OR l.status = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR coalesce(a.dataset, v.dataset) = ?)
      AND (CAST(? AS VARCHAR) IS NULL OR coalesce(m.policy, l.policy) = ?)
      AND (CAST(? AS VARCHAR) IS NULL
           OR list_contains(json_extract_string(m.reasons, '$[*].category'), ?)
           OR list_contains(json_extract_string(m.reasons, '$[*].parent'), ?))
      AND (CAST(? AS VARCHAR[]) IS NULL OR list_contains(?, l.subject_id))"""


def _worst_time(categories: list[dict]) -> float | None:
    # Reasons come most severe first; a video's carry the time of that category's highest score.
    for c in categories:
        if c.get("time") is not None:
            return float(c["time"])
    return None


def _keyframe(con, video_id: str, time_s: float | None) -> tuple[str | None, int | None]:
    row = con.execute(
        "SELECT coactive_image_id, keyframe_time_ms FROM pixql_internal.assets WHERE coactive_video_id = ?"
        " ORDER BY abs(keyframe_time_ms - ?), keyframe_index LIMIT 1",
        [video_id, (time_s or 0.0) * 1000.0],
    ).fetchone()
    return (row[0], row[1]) if row else (None, None)


def queue(con, status: str | None = "review", dataset: str | None = None, category: str | None = None,
          policy: str | None = None, offset: int = 0, limit: int = 24, subject_ids: list[str] | None = None) -> dict:
    """`subject_ids` narrows to the subjects behind a dashboard chart point (`api/web/insights.subjects`)."""
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
    args = [status, status, dataset, dataset, policy, policy, category, category, category, subject_ids, subject_ids]
    total = con.execute(f"SELECT count(*) {_FROM}", args).fetchone()[0]
    rows = con.execute(
        f"""SELECT l.subject_id, l.subject_kind, l.status, l.decided_by, l.user_name, l.comment, l.created_dt,
                   coalesce(m.policy, l.policy), coalesce(m.policy_version, l.policy_version), m.reasons,
                   coalesce(a.path, v.path), coalesce(a.dataset, v.dataset), a.media_type, a.keyframe_time_ms
            {_FROM} ORDER BY l.created_dt DESC, l.seq DESC LIMIT ? OFFSET ?""",
        args + [limit, offset],
    ).fetchall()
    items = []
    for (sid, kind, st, by, user, comment, when, pol, pol_v, reasons, path, ds, media, kf_ms) in rows:
        found = json.loads(reasons) if reasons else []
        categories = [r for r in found if r.get("category")]
        similar = next((r for r in found if r.get("similar_to")), None)
        item = {
            "subject_id": sid, "subject_kind": kind, "status": st, "decided_by": by, "user": user,
            "comment": comment, "decided_dt": when, "policy": pol, "policy_version": pol_v,
            "categories": categories, "similar": similar, "path": path, "dataset": ds,
            "media_type": "video" if kind == "video" else media,
            "thumbnail_id": sid if kind == "asset" else None, "frame_time_s": None,
        }
        if kind == "video":
            t = _worst_time(categories)
            item["thumbnail_id"], ms = _keyframe(con, sid, t)
            item["frame_time_s"] = t if t is not None else None
            item["worst_frame"] = t is not None
        elif media == "keyframe" and kf_ms is not None:
            item["frame_time_s"] = kf_ms / 1000.0
        items.append(item)
    end = offset + len(items)
    return {"status": status, "total": total, "offset": offset, "limit": limit,
            "next_offset": end if end < total else None, "items": items}
