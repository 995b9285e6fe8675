"""Response shapes of the moderation routes (`api/server/routers/moderation.py`) and the web
page's queue, for /docs.

The routes return the moderation service's plain dicts; these models document them without
changing a value (`models.Open`: unlisted keys pass through).  Fields a result carries only
sometimes (an error result has no scores) default to None and the routes use
`response_model_exclude_unset`, so an absent key stays absent rather than becoming null.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from .models import Num, Open

When = datetime | str | None  # catalog rows give datetimes; results read back from the cache give strings
Status = str  # approved | rejected | review (| pending while an async task runs, | error for one item)


# -- POST /moderate and its tasks ---------------------------------------------------------------
class PolicyRef(Open):
    name: str
    version: int | None
    spec: str
    inline: bool = Field(False, description="An inline string naming no stored policy (Cloudinary's "
                         "'aws_rek:...'): its overrides on the defaults, not stored.")


class ModerationResult(Open):
    index: int
    id: str | None = Field(None, description="Your reference, echoed back.")
    input: dict[str, Any] = Field(description="What was given: path, url, id or upload.")
    status: Status = Field(description="approved | rejected | review | error (an override wins).")
    cached: bool
    error: str | None = None
    subject_id: str | None = None
    subject_kind: str | None = None
    coactive_image_id: str | None = None
    coactive_video_id: str | None = None
    media_type: str | None = None
    path: str | None = None
    sha256: str | None = None
    model_status: Status | None = None
    categories: list[dict[str, Any]] | None = Field(None, description="Categories that triggered, with scores.")
    similar: dict[str, Any] | None = Field(None, description="A feedback-listed look-alike, if any.")
    reasons: list[dict[str, Any]] | None = None
    output: list[dict[str, Any]] | None = Field(None, description="Hive's shape: [{time, classes: [{class, score}]}].")
    override: dict[str, Any] | None = None
    decided_by: str | None = None


class ModerationReport(Open):
    policy: PolicyRef
    total: int
    counts: dict[str, int]
    unscored_categories: list[str]
    unreliable_categories: list[str] = Field(
        default_factory=list, description="Scored, but their built-in measured at chance or could not be measured "
        "on the dev set (`quality` in /moderation/categories): label examples before relying on them.")
    results: list[ModerationResult]


class ModerationTask(Open):
    task_id: str
    status: str = Field(description="queued | running | complete | error")
    policy: Any = None
    callback_url: str | None
    result: ModerationReport | dict[str, Any] | None
    error: str | None
    delivery_status: str | None
    delivered_dt: When
    created_dt: When
    finished_dt: When
    items: int


class Redelivery(Open):
    task_id: str
    delivery_id: str


class DeliveryAttempt(Open):
    delivery_id: str
    attempt: int
    url: str
    status_code: int | None
    error: str | None
    ok: bool | None
    sent_dt: When


class Deliveries(Open):
    task_id: str
    delivery_status: str | None
    attempts: list[DeliveryAttempt]


# -- the queue, one subject's decisions, overrides ----------------------------------------------
class QueueItem(Open):
    subject_id: str
    subject_kind: str
    status: Status
    reasons: list[Any]
    policy: str | None
    policy_version: int | None
    decided_by: str | None
    user: str | None
    comment: str | None
    decided_dt: When
    path: str | None
    dataset: str | None
    thumbnail_url: str | None


class Page(Open):
    status: str | None
    total: int
    offset: int
    limit: int
    next_offset: int | None


class ModerationQueue(Page):
    items: list[QueueItem]


class WebQueueItem(Open):
    subject_id: str
    subject_kind: str
    status: Status
    decided_by: str | None
    user: str | None
    comment: str | None
    decided_dt: When
    policy: str | None
    policy_version: int | None
    categories: list[dict[str, Any]]
    similar: dict[str, Any] | None
    path: str | None
    dataset: str | None
    media_type: str | None
    thumbnail_id: str | None
    frame_time_s: Num | None
    worst_frame: bool | None = Field(None, description="Videos only: the thumbnail is the worst keyframe.")


class WebQueue(Page):
    items: list[WebQueueItem]
    drill: str | None = None


class Decision(Open):
    seq: int
    status: Status
    reasons: list[Any]
    policy: str | None
    policy_version: int | None
    decided_by: str
    user: str | None
    comment: str | None
    task_id: str | None
    decided_dt: When
    model_status: Status | None
    policy_spec: str | None = Field(None, description="The policy string the decision used (inline ones too).")


class SubjectModeration(Open):
    subject_id: str
    subject_kind: str
    status: Status | None
    decided_by: str | None
    history: list[Decision] = Field(description="Newest first.")


# -- categories, cache, webhook secret ---------------------------------------------------------
class CategoryState(Open):
    category: str
    title: str
    parent: str | None
    children: list[str]
    builtin: str | None
    concept_version: int | None
    state: str
    scored: bool
    model: str | None = Field(None, description="The shipped model that scores it (open_nsfw, NudeNet), if any.")
    quality: dict[str, Any] | None = Field(None, description="Its built-in's measured quality on the dev set.")


class Categories(Open):
    categories: list[CategoryState]
    unscored_categories: list[str] = Field(default_factory=list, description="Nothing scores them yet.")
    unreliable_categories: list[str] = Field(default_factory=list, description="Scored, but at chance or "
                                             "unmeasurable on the dev set: label examples.")


class CacheStats(Open):
    entries: int
    live_entries: int
    expired_entries: int
    hits: int
    misses: int
    hit_rate: Num | None
    ttl_seconds: Num
    oldest_dt: When


class CacheCleared(Open):
    removed: int


class WebhookSecret(Open):
    secret: str
    header: str
    algorithm: str


# -- feedback ----------------------------------------------------------------------------------
class FeedbackLabel(Open):
    category: str
    concept_version: int | None
    trained: bool


class FeedbackOut(Open):
    coactive_image_id: str
    verdict: str
    list_: str = Field(alias="list", description="blocklist | passlist")  # `list` would shadow the builtin
    categories: list[str]
    labels: list[FeedbackLabel]
    status: Status


class FeedbackEntry(Open):
    coactive_image_id: str
    verdict: str
    categories: list[str]
    comment: str | None
    created_by: str | None
    created_dt: When


class FeedbackList(Open):
    items: list[FeedbackEntry]


# -- policies ----------------------------------------------------------------------------------
class PolicyOut(Open):
    name: str
    version: int | None
    spec: str
    thresholds: dict[str, Num | str] = Field(description="The policy's own overrides ('ignore' switches one off).")
    effective_thresholds: dict[str, Any]
    review_band: Num | None
    similarity: Num | None
    description: str | None
    created_dt: When
    created_by: str | None


class PolicyList(Open):
    policies: list[PolicyOut]


class PolicyVersions(Open):
    name: str
    versions: list[PolicyOut]
