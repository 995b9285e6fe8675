"""Response shapes of `/api/v1/insights` (the dashboard's and the charts' numbers), for /docs.

The routes return the plain dicts of `api/web/insights.py` and `api/web/concept_charts.py`;
these models document them without changing a value (see `models.Open`).
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from .models import Estimate, Num, Open


class Series(Open):
    name: str
    data: list[int] = Field(description="One count per day of `days`.")


class DaySeries(Open):
    days: list[str] = Field(description="Every UTC day of the period, ISO dates.")
    series: list[Series]
    totals: dict[str, int]


class Drill(Open):
    sql: str = Field(description="SQL over the warehouse views behind the numbers ({day} is a placeholder).")


class Ingested(DaySeries):
    drill: Drill


class StatusCount(Open):
    status: str
    count: int


class QueueNow(Open):
    statuses: list[StatusCount]
    total: int


class Overturn(Open):
    category: str
    model_decisions: int
    reviewed: int
    overturned: int
    rate: Num | None
    rate_of_reviewed: Num | None


class Overturns(Open):
    categories: list[Overturn]
    definition: str


class ConceptCount(Estimate):
    drill: Drill


class Dashboard(Open):
    since: str
    until: str
    dataset: str | None
    ingested: Ingested
    flagged: DaySeries
    queue: QueueNow
    decisions: DaySeries
    overturns: Overturns
    concepts: list[ConceptCount]


class Subjects(Open):
    drill: Literal["flagged", "decided", "overturned"]
    total: int
    subject_ids: list[str]


class PrecisionRecall(Open):
    precision: Num | None
    recall: Num | None
    true_positives: int
    false_positives: int
    false_negatives: int


class PrPoint(PrecisionRecall):
    threshold: Num


class Histogram(Open):
    bins: int
    edges: list[Num]
    counts: list[int]


class FlaggedAt(Open):
    steps: int
    thresholds: list[Num]
    counts: list[int]


class LabelledProb(Open):
    coactive_image_id: str
    path: str | None
    prob: Num
    label: str


class Threshold(Open):
    concept: str
    version: int
    saved_threshold: Num
    threshold: Num
    dataset: str | None
    scored: int
    flagged: int
    estimate: dict[str, Num]
    histogram: Histogram
    flagged_at: FlaggedAt
    labels: list[LabelledProb]
    labelled: dict[str, int]
    at_threshold: PrecisionRecall
    pr_curve: list[PrPoint]


class Keyframe(Open):
    coactive_image_id: str
    keyframe_index: int | None
    time_ms: Num | None


class CategorySeries(Open):
    category: str
    title: str
    scores: list[Num | None] = Field(description="One score per keyframe, null where it has none.")


class WorstFrame(Open):
    category: str
    score: Num
    keyframe_index: int | None
    time_ms: Num | None
    coactive_image_id: str


class Timeline(Open):
    coactive_video_id: str
    path: str
    dataset: str
    duration_ms: Num | None
    keyframes: list[Keyframe]
    series: list[CategorySeries]
    worst: WorstFrame | None
