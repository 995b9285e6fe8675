"""The review queue as the page lists it: the moderation queue's rows, shaped for the page.

The rows come from the one queue query (`concepts.moderation.queue.select`, the
same one `GET /api/v1/moderation` reads), filtered also by the category that
triggered, the policy that decided and, for a dashboard drill-down, explicit
subject ids.  This module adds what the page shows per item: the model's latest
triggering categories and look-alike, and for a video the keyframe where the
top category scored highest.  Read-only: every decision the page makes goes
through `PUT /api/v1/assets/{id}/moderation`.
"""
from __future__ import annotations

from concepts.moderation import queue as moderation_queue

from warehouse.errors import Invalid

STATUSES = ("approved", "rejected", "review")


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
    total, rows = moderation_queue.select(con, status, dataset, policy, category, subject_ids, offset, limit)
    items = []
    for r in rows:
        found = r["model_reasons"]
        categories = [x for x in found if x.get("category")]
        similar = next((x for x in found if x.get("similar_to")), None)
        kind, media, kf_ms = r["subject_kind"], r["media_type"], r["keyframe_time_ms"]
        item = {
            "subject_id": r["subject_id"], "subject_kind": kind, "status": r["status"],
            "decided_by": r["decided_by"], "user": r["user"], "comment": r["comment"],
            "decided_dt": r["decided_dt"],
            "policy": r["model_policy"] if r["model_policy"] is not None else r["policy"],
            "policy_version": r["model_policy_version"] if r["model_policy_version"] is not None
            else r["policy_version"],
            "categories": categories, "similar": similar, "path": r["path"], "dataset": r["dataset"],
            "media_type": "video" if kind == "video" else media,
            "thumbnail_id": r["subject_id"] if kind == "asset" else None, "frame_time_s": None,
        }
        if kind == "video":
            t = _worst_time(categories)
            item["thumbnail_id"], _ = _keyframe(con, r["subject_id"], t)
            item["frame_time_s"] = t
            item["worst_frame"] = t is not None
        elif media == "keyframe" and kf_ms is not None:
            item["frame_time_s"] = kf_ms / 1000.0
        items.append(item)
    return moderation_queue.envelope(status, total, offset, limit, items)
