"""The aggregates behind the dashboard and the charts, each one DuckDB query over the catalog.

Every function takes a cursor and returns plain JSON-able data; the routes in
`api/server/routers/insights.py` only parse parameters.  Days are UTC dates and
a period is `since`..`until`, both inclusive; every day in it is listed, with 0
where nothing happened, so a chart's x axis has no gaps.

Each chart point that stands for a set of subjects has a matching drill-down
(`subjects(...)`) built from the same SQL, so the queue a click opens holds
exactly the number the point shows.
"""
from __future__ import annotations

from datetime import date, timedelta

from warehouse import readers  # each function reads the views on a cursor: a reader while it does
from warehouse.errors import Invalid

DEFAULT_DAYS = 30
MAX_DAYS = 366
NONE = "(none)"  # model verdicts that name no category (approved, or decided by a look-alike)

# Where a subject (asset or video) belongs: the same joins the review queue uses.
_DATASET_JOIN = """LEFT JOIN pixql_internal.assets a ON a.coactive_image_id = d.subject_id
    LEFT JOIN catalog.videos v ON v.coactive_video_id = d.subject_id"""
_IN_DATASET = "(CAST(? AS VARCHAR) IS NULL OR coalesce(a.dataset, v.dataset) = ?)"
_REASON = "'[{\"category\": \"VARCHAR\", \"parent\": \"VARCHAR\"}]'"
_TOP = "coalesce(x.parent, x.category)"


def period(since: date | None, until: date | None) -> tuple[date, date]:
    from warehouse import catalog

    until = until or catalog.now().date()
    since = since or until - timedelta(days=DEFAULT_DAYS - 1)
    if since > until:
        raise Invalid(f"since ({since}) is after until ({until})")
    if (until - since).days >= MAX_DAYS:
        raise Invalid(f"a period is at most {MAX_DAYS} days, got {(until - since).days + 1}")
    return since, until


def _days(since: date, until: date) -> list[str]:
    return [str(since + timedelta(days=i)) for i in range((until - since).days + 1)]


def _span(since: date, until: date) -> list:
    # Half-open on timestamps: [since 00:00, until + 1 day 00:00).
    return [since, until + timedelta(days=1)]


def _series(rows, days: list[str], order: list[str] | None = None) -> dict:
    """(day, key, count) rows -> {days, series: [{name, data: [count per day]}], totals}."""
    by: dict[str, dict[str, int]] = {}
    for day, key, n in rows:
        by.setdefault(key, {})[str(day)] = int(n)
    keys = order if order is not None else sorted(by, key=lambda k: (-sum(by[k].values()), k))
    series = [{"name": k, "data": [by.get(k, {}).get(d, 0) for d in days]} for k in keys if k in by or order]
    return {"days": days, "series": series, "totals": {s["name"]: sum(s["data"]) for s in series}}


# -- assets -------------------------------------------------------------------------------------
@readers.reading()
def ingested(con, since: date, until: date, dataset: str | None) -> dict:
    """Rows of coactive_table per day of `created_dt`, by media type (image, keyframe)."""
    rows = con.execute(
        """SELECT CAST(created_dt AS DATE), media_type, count(*) FROM pixql_internal.assets
           WHERE created_dt >= ? AND created_dt < ? AND (CAST(? AS VARCHAR) IS NULL OR dataset = ?)
           GROUP BY ALL""", [*_span(since, until), dataset, dataset]).fetchall()
    out = _series(rows, _days(since, until))
    out["drill"] = {"sql": ingested_sql("{day}", dataset)}
    return out


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def ingested_sql(day: str, dataset: str | None) -> str:
    """The SQL console query listing one day's ingested assets (`{day}` is filled in by the page)."""
    where = f" AND dataset = {_quote(dataset)}" if dataset else ""
    return ("SELECT coactive_image_id, path, dataset, media_type, created_dt FROM coactive_table\n"
            f"WHERE created_dt >= DATE '{day}' AND created_dt < DATE '{day}' + INTERVAL 1 DAY{where}\n"
            "ORDER BY created_dt, path")


# -- moderation ---------------------------------------------------------------------------------
def _flagged_cte() -> str:
    # Model verdicts that flagged a subject (reject or review), one row per top-level category named.
    return f"""flagged AS (
        SELECT DISTINCT subject_id, CAST(created_dt AS DATE) AS day, {_TOP} AS category
        FROM (SELECT d.subject_id, d.created_dt, unnest(from_json(d.reasons, {_REASON})) AS x
              FROM catalog.moderation_decisions d {_DATASET_JOIN}
              WHERE d.decided_by = 'model' AND d.status IN ('rejected', 'review')
                AND d.created_dt >= ? AND d.created_dt < ? AND {_IN_DATASET})
        WHERE x.category IS NOT NULL)"""


@readers.reading()
def flagged(con, since: date, until: date, dataset: str | None) -> dict:
    """Subjects the model flagged per day, by top-level category (a subject counts once per category and day)."""
    rows = con.execute(f"WITH {_flagged_cte()} SELECT day, category, count(*) FROM flagged GROUP BY ALL",
                       [*_span(since, until), dataset, dataset]).fetchall()
    return _series(rows, _days(since, until))


@readers.reading()
def queue_now(con, dataset: str | None) -> dict:
    """The moderation queue by current status (a person's decision outranks the model's)."""
    rows = con.execute(
        f"""SELECT d.status, count(*) FROM pixql_internal.moderation_latest d {_DATASET_JOIN}
            WHERE {_IN_DATASET} GROUP BY 1""", [dataset, dataset]).fetchall()
    counts = {s: 0 for s in ("review", "rejected", "approved")}
    counts.update({s: int(n) for s, n in rows})
    return {"statuses": [{"status": s, "count": n} for s, n in counts.items()], "total": sum(counts.values())}


def _decided_cte() -> str:
    return f"""decided AS (
        SELECT DISTINCT d.subject_id, CAST(d.created_dt AS DATE) AS day, d.status
        FROM catalog.moderation_decisions d {_DATASET_JOIN}
        WHERE d.status <> 'pending' AND d.created_dt >= ? AND d.created_dt < ? AND {_IN_DATASET})"""


@readers.reading()
def decisions(con, since: date, until: date, dataset: str | None) -> dict:
    """Subjects decided per day by the status decided (model and people alike)."""
    rows = con.execute(f"WITH {_decided_cte()} SELECT day, status, count(*) FROM decided GROUP BY ALL",
                       [*_span(since, until), dataset, dataset]).fetchall()
    return _series(rows, _days(since, until), order=["rejected", "review", "approved"])


def _verdicts_cte() -> str:
    # Per subject, the model's newest verdict in the period; the person's newest decision after it;
    # the verdict that person changed is the one recorded with their decision (model_status), else the
    # model verdict before it.  One row per top-level category the model verdict named.
    return f"""model AS (
        SELECT d.subject_id, d.status, d.reasons, d.created_dt, d.seq
        FROM catalog.moderation_decisions d {_DATASET_JOIN}
        WHERE d.decided_by = 'model' AND d.status <> 'pending'
          AND d.created_dt >= ? AND d.created_dt < ? AND {_IN_DATASET}
        QUALIFY row_number() OVER (PARTITION BY d.subject_id ORDER BY d.created_dt DESC, d.seq DESC) = 1),
    human AS (
        SELECT u.subject_id, u.status, u.model_status FROM catalog.moderation_decisions u JOIN model m
          ON m.subject_id = u.subject_id
         AND (u.created_dt > m.created_dt OR (u.created_dt = m.created_dt AND u.seq > m.seq))
        WHERE u.decided_by = 'user'
        QUALIFY row_number() OVER (PARTITION BY u.subject_id ORDER BY u.created_dt DESC, u.seq DESC) = 1),
    verdicts AS (
        SELECT m.subject_id, coalesce(cat.category, '{NONE}') AS category, h.subject_id IS NOT NULL AS reviewed,
               coalesce(h.status <> coalesce(h.model_status, m.status), false) AS overturned
        FROM model m LEFT JOIN human h USING (subject_id)
        LEFT JOIN (SELECT DISTINCT subject_id, {_TOP} AS category
                   FROM (SELECT subject_id, unnest(from_json(reasons, {_REASON})) AS x FROM model)
                   WHERE x.category IS NOT NULL) cat USING (subject_id))"""


@readers.reading()
def overturns(con, since: date, until: date, dataset: str | None) -> dict:
    """Per top-level category: model verdicts, how many a person decided after, how many they changed."""
    rows = con.execute(
        f"""WITH {_verdicts_cte()}
            SELECT category, count(*), count(*) FILTER (WHERE reviewed), count(*) FILTER (WHERE overturned)
            FROM verdicts GROUP BY 1 ORDER BY 4 DESC, 2 DESC, 1""",
        [*_span(since, until), dataset, dataset]).fetchall()
    cats = [{"category": c, "model_decisions": int(n), "reviewed": int(r), "overturned": int(o),
             "rate": (o / n) if n else None, "rate_of_reviewed": (o / r) if r else None} for c, n, r, o in rows]
    return {"categories": cats,
            "definition": "overturned / model_decisions: the share of the model's verdicts in the period "
                          "that a person later changed to another status"}


DRILLS = ("flagged", "decided", "overturned")


@readers.reading()
def subjects(con, drill: str, since: date, until: date, dataset: str | None, day: date | None = None,
             category: str | None = None, status: str | None = None) -> list[str]:
    """The subject ids behind one chart point, from the same SQL that counted them."""
    args = [*_span(since, until), dataset, dataset]
    if drill == "flagged":
        sql = (f"WITH {_flagged_cte()} SELECT subject_id FROM flagged WHERE (CAST(? AS DATE) IS NULL OR day = ?) "
               "AND (CAST(? AS VARCHAR) IS NULL OR category = ?)")
        args += [day, day, category, category]
    elif drill == "decided":
        sql = (f"WITH {_decided_cte()} SELECT subject_id FROM decided WHERE (CAST(? AS DATE) IS NULL OR day = ?) "
               "AND (CAST(? AS VARCHAR) IS NULL OR status = ?)")
        args += [day, day, status, status]
    elif drill == "overturned":
        sql = (f"WITH {_verdicts_cte()} SELECT subject_id FROM verdicts WHERE overturned "
               "AND (CAST(? AS VARCHAR) IS NULL OR category = ?)")
        args += [category, category]
    else:
        raise Invalid(f"drill must be one of {', '.join(DRILLS)}, got {drill!r}")
    # The queue filters on these ids; materialising them keeps its statement's parameters its own.
    return [r[0] for r in con.execute(f"SELECT DISTINCT subject_id FROM ({sql})", args).fetchall()]
