"""Column provider: analyzer columns in `coactive_table_adv`, OCR moderation flags, and `coactive_videos`.

Analyzer results are Parquet parts (catalog.parts kind 'analyzer'); each analyzer
in use becomes an internal view `pixql_internal.analyzer_<name>` LEFT JOINed on
`coactive_image_id`, so an asset not (yet) analyzed reads NULL.  An analyzer no
dataset uses adds no columns.

`ocr_flags` is computed in SQL from `ocr_text` with the patterns below (RE2
syntax, case-insensitive), so changing a pattern takes effect on every row at
once, with no re-analysis.  Users override or switch off a flag, or add their
own, through `catalog.ocr_patterns` (`pixql ocr-flags`, or `set_ocr_pattern`).

`coactive_videos` has one row per video: its `catalog.videos` facts plus, over
its keyframes, for every concept `c` in `coactive_table_adv`: `c` (1 if any
keyframe is at or over the threshold), `c_max_prob` and `c_max_time_ms` (the
keyframe time of that maximum); and for analyzers `nsfw_score_max` (with its
time), `face_count_max` and the union of `ocr_flags`.  It aggregates the
concept columns of `coactive_table_adv`, so they stay lazy: DuckDB drops the
aggregates a query does not name.
"""
from __future__ import annotations

import json
import re

from . import catalog
from .storage import safe_name
from .views import INTERNAL, ViewParts, parquet_source
from .errors import Invalid

# flag -> (pattern, what it catches).  Heuristics for triage, tuned for recall on
# short overlay text; review before acting on a flag alone.
DEFAULT_OCR_PATTERNS: dict[str, tuple[str, str]] = {
    "threat": (
        r"\b(i('| a)?m (going to|gonna)|i('| wi)ll|gonna|we('| wi)ll)\s+(kill|shoot|stab|hurt|murder|find)\b"
        r"|\b(kill|shoot|stab|murder)\s+(you|u|him|her|them|everyone|all of you)\b"
        r"|\byou('| a)?re\s+(dead|next)\b|\bbomb threat\b",
        "threats of violence against a person",
    ),
    "drug_sale": (
        r"\b(buy|sell|selling|sale|order|cheap|discount|delivery|plug)\b.{0,40}"
        r"\b(pills?|weed|cocaine|coke|meth|mdma|molly|xanax|xans|oxy|oxycodone|oxycontin|percocet|percs|"
        r"fentanyl|lsd|shrooms|ketamine|adderall|heroin|kush|thc|carts)\b"
        r"|\b(pills?|weed|cocaine|meth|mdma|xanax|oxy|fentanyl|adderall|kush)\b.{0,40}"
        r"\b(for sale|available|in stock|delivered|delivery|dm|hmu)\b",
        "offers to sell or deliver drugs",
    ),
    "contact_info": (
        r"[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,}"
        r"|\+\d{1,3}[\s.-]?\d[\d\s.-]{6,}\d|\(?\b\d{3}\)?[\s.-]\d{3}[\s.-]\d{4}\b"
        r"|\b(whats ?app|telegram|snapchat|kik|wickr|wechat)\b|\b(dm|text|call|message|add) me\b"
        r"|https?://|\bwww\.|\b[a-z0-9-]+\.(com|net|org|io|me|ly|gg)\b",
        "emails, phone numbers, messenger handles and links that move a conversation off-platform",
    ),
}

FLAG_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def ocr_patterns(con) -> dict[str, tuple[str, str]]:
    """The effective flag -> (pattern, description): defaults with the catalog's overrides."""
    out = dict(DEFAULT_OCR_PATTERNS)
    for flag, pattern, description in con.execute(
        "SELECT flag, pattern, description FROM catalog.ocr_patterns ORDER BY flag"
    ).fetchall():
        if pattern is None:
            out.pop(flag, None)
        else:
            out[flag] = (pattern, description or out.get(flag, ("", ""))[1])
    return out


def set_ocr_pattern(con, flag: str, pattern: str | None, description: str | None = None) -> None:
    """Add or replace a flag's pattern (None switches the flag off); the caller rebuilds views."""
    if not FLAG_NAME.match(flag or ""):
        raise Invalid(f"invalid flag name {flag!r}: lowercase letters, digits and '_', starting with a letter")
    if pattern is not None:
        if not pattern.strip():
            raise Invalid("empty pattern")
        try:
            con.execute("SELECT regexp_matches('', ?, 'i')", [pattern]).fetchall()
        except Exception as e:
            raise Invalid(f"invalid pattern for {flag!r} (RE2 syntax): {e}") from None
    catalog.insert(con, "ocr_patterns", dict(flag=flag, pattern=pattern, description=description,
                                             created_dt=catalog.now()), or_replace=True)


def reset_ocr_pattern(con, flag: str) -> bool:
    """Drop the catalog override of a flag (a default comes back); True if there was one."""
    n = con.execute("SELECT count(*) FROM catalog.ocr_patterns WHERE flag = ?", [flag]).fetchone()[0]
    con.execute("DELETE FROM catalog.ocr_patterns WHERE flag = ?", [flag])
    return bool(n)


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ocr_flags_sql(text: str, patterns: dict[str, tuple[str, str]]) -> str:
    if not patterns:
        return f"CASE WHEN {text} IS NULL THEN NULL ELSE []::VARCHAR[] END"
    cases = ", ".join(
        f"CASE WHEN regexp_matches({text}, {_lit(p)}, 'i') THEN {_lit(flag)} END" for flag, (p, _) in patterns.items()
    )
    return f"CASE WHEN {text} IS NULL THEN NULL ELSE list_filter([{cases}], lambda x: x IS NOT NULL) END"


def analyzers_in_use(con) -> list[tuple[str, dict[str, str]]]:
    rows = con.execute(
        """SELECT name, columns FROM catalog.analyzers
           WHERE name IN (SELECT analyzer FROM catalog.dataset_analyzers)
              OR name IN (SELECT encoder FROM catalog.parts WHERE kind = 'analyzer')
           ORDER BY name"""
    ).fetchall()
    return [(name, json.loads(cols)) for name, cols in rows]


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    for name, columns in analyzers_in_use(con):
        view = f"{INTERNAL}.analyzer_{safe_name(name)}"
        alias = f"an_{safe_name(name)}"
        files = catalog.part_paths(con, "analyzer", encoder=name)
        cols = ", ".join(columns)
        if files:
            select = f"SELECT coactive_image_id, {cols} FROM {parquet_source(f'analyzer_{name}', root, files, parts.pre)}"
        else:
            typed = ", ".join(f"NULL::{t} AS {c}" for c, t in columns.items())
            select = f"SELECT NULL::VARCHAR AS coactive_image_id, {typed} WHERE false"
        parts.pre.append(f"CREATE OR REPLACE VIEW {view} AS {select}")
        parts.adv_joins.append(f"LEFT JOIN {view} {alias} ON {alias}.coactive_image_id = a.coactive_image_id")
        parts.adv_columns += [f"{alias}.{c} AS {c}" for c in columns]
        if name == "ocr":
            parts.adv_columns.append(f"{ocr_flags_sql(f'{alias}.ocr_text', ocr_patterns(con))} AS ocr_flags")
    parts.views.append(("coactive_videos", videos_select))
    return parts


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def videos_select(columns: list[str]) -> str:
    """The SELECT of `coactive_videos`, from the column names of `coactive_table_adv`."""
    cols = list(columns)
    have = set(cols)
    aggs = ["count(*) AS keyframes"]
    out = ["coalesce(k.keyframes, 0) AS keyframes"]

    def add(expr: str, alias: str) -> None:
        aggs.append(f"{expr} AS {_q(alias)}")
        out.append(f"k.{_q(alias)}")

    if "nsfw_score" in have:
        add("max(nsfw_score)", "nsfw_score_max")
        add("arg_max(keyframe_time_ms, nsfw_score)", "nsfw_score_max_time_ms")
    if "face_count" in have:
        add("max(face_count)", "face_count_max")
    if "ocr_flags" in have:
        add("list_sort(list_distinct(flatten(list(ocr_flags) FILTER (WHERE ocr_flags IS NOT NULL))))", "ocr_flags")
    suffix = "_latest_prob"
    for col in cols:
        concept = col[: -len(suffix)]
        if col.endswith(suffix) and concept in have:
            add(f"max({_q(concept)})", concept)
            add(f"max({_q(col)})", f"{concept}_max_prob")
            add(f"arg_max(keyframe_time_ms, {_q(col)})", f"{concept}_max_time_ms")
    return (
        "SELECT v.coactive_video_id, v.dataset, v.path, v.container, v.codec, v.width, v.height,\n"
        "  v.duration_ms, v.fps, v.sample_fps, v.max_frames, v.frames_sampled, v.status AS video_status,\n"
        f"  v.error AS video_error, v.created_dt, {', '.join(out)}\n"
        "FROM catalog.videos v LEFT JOIN (\n"
        f"  SELECT coactive_video_id, {', '.join(aggs)}\n"
        "  FROM main.coactive_table_adv WHERE media_type = 'keyframe' GROUP BY coactive_video_id\n"
        ") k USING (coactive_video_id)"
    )
