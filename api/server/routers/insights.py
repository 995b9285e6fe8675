"""`/api/v1/insights`: the aggregates behind the dashboard and the charts, for any client with read scope.

Thin: parameters in, the DuckDB queries of `api/web/insights.py` and
`api/web/concept_charts.py` out.  Periods are UTC days, `since`..`until`
inclusive (default: the last 30 days).
"""
from __future__ import annotations

from datetime import date
from typing import Literal

from fastapi import APIRouter, Query

from ..deps import Reader, State
from ..models_insights import (ConceptCount, Dashboard, DaySeries, Ingested, Overturns, QueueNow, Subjects,
                              Threshold, Timeline)

router = APIRouter(prefix="/api/v1/insights", tags=["insights"])

Since = Query(None, description="first day (UTC), default 29 days before `until`")
Until = Query(None, description="last day (UTC, inclusive), default today")


@router.get("/dashboard", response_model=Dashboard)
def dashboard(state: State, who: Reader, since: date | None = Since, until: date | None = Until,
              dataset: str | None = None, concepts: int = Query(10, ge=0, le=100)):
    """Everything `/web/dashboard` draws, in one call: see the other routes for each part."""
    from api.web import concept_charts, insights

    s, u = insights.period(since, until)
    con = state.cursor()
    ds = dataset or None
    return {
        "since": str(s), "until": str(u), "dataset": ds,
        "ingested": insights.ingested(con, s, u, ds),
        "flagged": insights.flagged(con, s, u, ds),
        "queue": insights.queue_now(con, ds),
        "decisions": insights.decisions(con, s, u, ds),
        "overturns": insights.overturns(con, s, u, ds),
        "concepts": concept_charts.top_concepts(state.wh, ds, concepts) if concepts else [],
    }


@router.get("/ingested", response_model=Ingested)
def ingested(state: State, who: Reader, since: date | None = Since, until: date | None = Until,
             dataset: str | None = None):
    """Rows of coactive_table per day of created_dt, one series per media type."""
    from api.web import insights

    s, u = insights.period(since, until)
    return insights.ingested(state.cursor(), s, u, dataset or None)


@router.get("/flagged", response_model=DaySeries)
def flagged(state: State, who: Reader, since: date | None = Since, until: date | None = Until,
            dataset: str | None = None):
    """Assets and videos the model rejected or sent to review, per day and top-level category."""
    from api.web import insights

    s, u = insights.period(since, until)
    return insights.flagged(state.cursor(), s, u, dataset or None)


@router.get("/queue", response_model=QueueNow)
def queue(state: State, who: Reader, dataset: str | None = None):
    """The moderation queue now, by current status."""
    from api.web import insights

    return insights.queue_now(state.cursor(), dataset or None)


@router.get("/decisions", response_model=DaySeries)
def decisions(state: State, who: Reader, since: date | None = Since, until: date | None = Until,
              dataset: str | None = None):
    """Subjects decided per day, by the status decided (model and people)."""
    from api.web import insights

    s, u = insights.period(since, until)
    return insights.decisions(state.cursor(), s, u, dataset or None)


@router.get("/overturns", response_model=Overturns)
def overturns(state: State, who: Reader, since: date | None = Since, until: date | None = Until,
              dataset: str | None = None):
    """Per top-level category, the share of the model's verdicts that a person changed."""
    from api.web import insights

    s, u = insights.period(since, until)
    return insights.overturns(state.cursor(), s, u, dataset or None)


@router.get("/subjects", response_model=Subjects)
def subjects(state: State, who: Reader, drill: Literal["flagged", "decided", "overturned"],
             since: date | None = Since, until: date | None = Until, dataset: str | None = None,
             day: date | None = None, category: str | None = None, status: str | None = None):
    """The asset and video ids behind one point of the flagged, decisions or overturns chart."""
    from api.web import insights

    s, u = insights.period(since, until)
    ids = insights.subjects(state.cursor(), drill, s, u, dataset or None, day, category or None, status or None)
    return {"drill": drill, "total": len(ids), "subject_ids": sorted(ids)}


@router.get("/concepts", response_model=list[ConceptCount])
def top_concepts(state: State, who: Reader, dataset: str | None = None, limit: int = Query(10, ge=1, le=100)):
    """Concepts by the number of assets at or over their threshold, with the estimate's 95% interval."""
    from api.web import concept_charts

    return concept_charts.top_concepts(state.wh, dataset or None, limit)


@router.get("/concepts/{name}/threshold", response_model=Threshold)
def concept_threshold(name: str, state: State, who: Reader,
                      threshold: float | None = Query(None, ge=0.0, le=1.0, description="default: the saved one"),
                      bins: int = Query(50, ge=2, le=200), dataset: str | None = None):
    """Histogram of the concept's probabilities, labels on it, precision/recall and flagged counts."""
    from api.web import concept_charts

    return concept_charts.threshold(state.wh, name, threshold, bins, dataset or None)


@router.get("/videos/{video_id}/timeline", response_model=Timeline)
def video_timeline(video_id: str, state: State, who: Reader, top: int = Query(3, ge=1, le=10)):
    """Per-keyframe scores of the video's highest-scoring top-level categories, and its worst frame."""
    from api.web import concept_charts

    return concept_charts.timeline(state.wh, video_id, top)
