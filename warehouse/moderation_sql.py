"""Column provider: `moderation_status` in `coactive_table_adv`; see `views.ViewParts` for the contract.

The status is the latest decision in `catalog.moderation_decisions` for the
asset, where any user decision (a manual override) outranks every model
decision, however recent: a later model run never undoes a moderator's call.
A keyframe without a decision of its own shows its video's verdict.  Assets
never moderated read NULL; while no asset has a decision the column is a typed
NULL and the joins are left out (`views.DATA_AWARE`).

Compiles catalog rows into SQL; it never imports code from outside `warehouse`.
"""
from __future__ import annotations

from .views import INTERNAL, ViewParts, data_shape

LATEST_VIEW = f"{INTERNAL}.moderation_latest"
# An erasure keeps decisions as audit rows with the subject 'erased:<tombstone_id>'
# (warehouse/erasure.py); they are no one's current decision.

LATEST_SQL = f"""CREATE OR REPLACE VIEW {LATEST_VIEW} AS
SELECT subject_id, subject_kind, status, reasons, policy, policy_version, decided_by, user_name,
       comment, created_dt, seq
FROM catalog.moderation_decisions
WHERE subject_id NOT LIKE 'erased:%'
QUALIFY row_number() OVER (
    PARTITION BY subject_id ORDER BY (decided_by = 'user') DESC, created_dt DESC, seq DESC) = 1"""


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    parts.pre.append(LATEST_SQL)
    # LEFT JOINs on the one-row-per-subject view, only in coactive_table_adv.
    # (Scalar subqueries looked cheaper but DuckDB plans them as delim joins
    # even when a query never names the column: ~0.4 s per million rows.  No
    # form is free when unnamed: tests/test_adv_joins.py.)
    if not data_shape(con)["moderation_decisions"]:
        parts.adv_columns.append("NULL::VARCHAR AS moderation_status")
        return parts
    parts.adv_joins += [
        f"LEFT JOIN {LATEST_VIEW} mod_img ON mod_img.subject_id = a.coactive_image_id",
        f"LEFT JOIN {LATEST_VIEW} mod_vid ON mod_vid.subject_id = a.coactive_video_id",
    ]
    parts.adv_columns.append("COALESCE(mod_img.status, mod_vid.status) AS moderation_status")
    return parts
