"""Request and response bodies: the HTTP contract.  Query fields follow Coactive's public API."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_serializer, field_validator

QueryStatus = Literal["Queued", "Running", "Stopping", "Complete", "Error", "Stopped"]
Scope = Literal["read", "write", "admin"]


class _Out(BaseModel):
    """Timestamps are stored as naive UTC; they go out with an explicit zone."""

    @field_serializer("*", when_used="json")
    def _utc(self, v: Any):
        if isinstance(v, datetime) and v.tzinfo is None:
            return v.replace(tzinfo=timezone.utc).isoformat().replace("+00:00", "Z")
        return v


# -- queries -----------------------------------------------------------------------------------
class QueryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000, description="One SELECT over the warehouse views.")
    dataset_id: str | None = Field(None, description="Limit coactive_table & co. to this dataset's rows.")
    embedding_id: str | None = Field(None, description="Encoder name; checked and recorded.")


class ResultRow(BaseModel):
    row: int
    data: dict[str, Any]


class QueryResults(BaseModel):
    columns: list[str]
    column_types: list[str]
    offset: int
    limit: int
    next_offset: int | None
    data: list[ResultRow]


class QueryResponse(_Out):
    query_id: str
    query: str
    dataset_id: str | None = None
    embedding_id: str | None = None
    status: QueryStatus
    created_dt: datetime
    start_dt: datetime | None = None
    end_dt: datetime | None = None
    total_row_count: int | None = None
    results: QueryResults | None = None
    error: str | None = None


class QueryList(BaseModel):
    queries: list[QueryResponse]
    total: int
    offset: int
    limit: int


# -- datasets and ingestion ---------------------------------------------------------------------
class Column(BaseModel):
    name: str
    type: str


class Table(BaseModel):
    name: str
    columns: list[Column]


class Dataset(_Out):
    dataset_id: str
    encoder: str
    created_dt: datetime
    asset_count: int
    encoders: list[str]
    error_count: int
    tables: list[Table]


class IngestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    dataset: str = Field("default", description="Dataset to add the assets to (created if new).")
    paths: list[str] = Field(min_length=1, description="Server-side files, directories, globs or @list files.")
    encoder: str | None = Field(None, description="imagenet-lite0 (default) or clip:<model>:<pretrained>.")
    engine: Literal["local", "ray"] = Field(
        "local", description="'ray': decode and embed on the server's Ray cluster (setting ray_address).")

    @field_validator("encoder")
    @classmethod
    def _loadable_encoder(cls, v: str | None, info: ValidationInfo) -> str | None:
        # Refused here (422), not as a failed job after the 202.  The context's
        # `path_roots` confine checkpoint paths as they confine `paths`.
        if v is None or not v.strip():
            return None
        from encoders import check_encoder_spec
        from warehouse.errors import Forbidden, MissingFile

        try:
            return check_encoder_spec(v, (info.context or {}).get("path_roots"))
        except PermissionError as e:  # encoders sit below warehouse.errors and raise the builtins
            raise Forbidden(str(e)) from None
        except FileNotFoundError as e:
            raise MissingFile(str(e)) from None


class IngestJob(_Out):
    job_id: str
    dataset: str
    encoder: str | None
    status: Literal["Queued", "Running", "Complete", "Error", "Stopped"]
    total_assets: int
    processed_assets: int
    errored_assets: int
    added_assets: int
    skipped_assets: int
    created_dt: datetime | None
    start_dt: datetime | None
    end_dt: datetime | None
    error: str | None
    errors: list[dict] = []


class Asset(_Out):
    coactive_image_id: str
    dataset: str
    path: str
    media_type: str
    width: int | None
    height: int | None
    created_dt: datetime | None
    thumbnail_url: str


# -- tokens -------------------------------------------------------------------------------------
class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    scope: Scope = "read"


class TokenCreated(BaseModel):
    client_id: str
    client_secret: str
    name: str
    scope: Scope
    access_token: str = Field(description="client_id:client_secret, as sent after 'Bearer '")


class TokenInfo(_Out):
    client_id: str
    name: str
    scope: Scope
    created_dt: datetime
    revoked_dt: datetime | None


# -- classification -----------------------------------------------------------------------------
class ClassifyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    paths: list[str] | None = Field(None, description="Server-side image files or directories.")
    urls: list[str] | None = Field(None, description="http(s) URLs the server downloads.")
    concepts: list[str] | None = Field(None, description="Concept names (default: every concept).")
    threshold: float | None = Field(None, ge=0, le=1, description="Overrides each concept's own threshold.")
    embedding_id: str | None = Field(None, description="Accepted for Coactive compatibility; each concept uses its own encoder.")


class ConceptScore(BaseModel):
    name: str
    score: float
    threshold: float
    positive: bool


class Classification(BaseModel):
    path: str
    url: str | None = None
    coactive_image_id: str | None = None
    concepts: list[ConceptScore] = []
    classification: list[str] = []
    error: str | None = None


class ClassifyResponse(BaseModel):
    results: list[Classification]


# -- concepts -----------------------------------------------------------------------------------
class ConceptCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str | None = None
    prompts: list[str] | None = None
    negative_prompts: list[str] | None = None
    positive: list[str] | None = Field(None, description="coactive_image_id or path of positive examples.")
    negative: list[str] | None = None
    threshold: float | None = Field(None, ge=0, le=1, description="Omitted: the default rule (threshold_source).")
    encoder: str | None = None
    parent: str | None = None


class ConceptUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    description: str | None = None
    prompts: list[str] | None = None
    negative_prompts: list[str] | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    parent: str | None = None


class LabelsPatch(BaseModel):
    """Positive/negative examples by coactive_image_id or path; `remove` (or an empty label) withdraws one."""

    model_config = ConfigDict(extra="forbid")
    positive: list[str] = []
    negative: list[str] = []
    remove: list[str] = []
    labels: dict[str, Literal["positive", "negative", ""] | None] = Field(
        default_factory=dict, description="{asset: 'positive' | 'negative' | '' (remove)}")


class ConceptOut(_Out):
    name: str
    description: str | None
    encoder: str
    parent: str | None
    threshold: float
    latest_version: int
    created_dt: datetime
    updated_dt: datetime
    kind: str | None = None
    prompts: list = []
    negative_prompts: list = []
    positive_labels: int = 0
    negative_labels: int = 0
    threshold_source: str | None = Field(None, description="'user', 'robust: ...', 'labels: ...' or 'default 0.5 (...)'")


class ConceptVersionOut(_Out):
    concept: str
    version: int
    kind: str
    encoder: str
    vector_column: str
    dim: int
    scale: float
    bias: float
    link: str
    threshold: float
    prompts: list
    negative_prompts: list
    training: dict
    created_dt: datetime
    threshold_source: str | None = None


# -- documented shapes of plain-dict answers ----------------------------------------------------
Num = int | float  # a union keeps the number as the route produced it (no 3.0 -> 3 coercion)


class Open(BaseModel):
    """A response shape whose listed fields are the contract; a key added later passes through
    unchanged rather than being dropped, so documenting a route never changes what it answers."""

    model_config = ConfigDict(extra="allow")


class Health(Open):
    status: Literal["ok"]


class Readiness(Open):
    status: Literal["ready", "starting"]
    warehouse: str | bool = Field(description="The warehouse root, or false before it is open.")
    model: Literal["loaded", "loading", "lazy", "error"] | bool
    model_error: str | None = None
    auth: bool | None = None


class LabelOut(Open):
    coactive_image_id: str
    path: str | None
    label: Literal["positive", "negative"]
    created_by: str | None
    created_dt: str = Field(description="ISO 8601, UTC")


class Candidate(Open):
    coactive_image_id: str
    dataset: str
    path: str
    prob: Num
    uncertainty: Num = Field(description="1 at the threshold, 0 at the far end of [0, 1].")


class Estimate(Open):
    concept: str
    version: int
    threshold: Num
    assets: int
    scored: int
    count: int = Field(description="Assets at or over the threshold.")
    fraction: Num
    expected_positives: Num
    ci95_low: Num
    ci95_high: Num
    method: str


class IngestErrorOut(Open):
    run_id: str | None
    path: str
    reason: str
    created_dt: datetime


class Session(Open):
    client_id: str | None
    name: str | None
    scope: Scope
    auth: bool
