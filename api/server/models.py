"""Request and response bodies: the HTTP contract.  Query fields follow Coactive's public API."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import (AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, computed_field, field_serializer,
                      field_validator)

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
    # The Coactive SDK sends {"query", "datasetId"}; PixQL's own clients send snake_case.
    model_config = ConfigDict(extra="forbid")
    query: str = Field(min_length=1, max_length=100_000, description="One SELECT over the warehouse views.")
    dataset_id: str | None = Field(None, validation_alias=AliasChoices("dataset_id", "datasetId"),
                                   description="Limit coactive_table & co. to this dataset's rows (its name or UUID).")
    embedding_id: str | None = Field(None, validation_alias=AliasChoices("embedding_id", "embeddingId"),
                                     description="Encoder name; checked and recorded.")


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


class CoactiveQueryResult(BaseModel):
    """The SDK's `QueryResult`: the same rows as `results`, with Coactive's page metadata."""

    error: str | None = None
    meta: dict | None = Field(None, description="PagedMetaResponse: page {currentPage, lastPage, limit, offset, total}, links, sort")
    data: list[ResultRow] | None = None


def _z(v: datetime | None) -> str | None:
    if v is None:
        return None
    return (v if v.tzinfo else v.replace(tzinfo=timezone.utc)).isoformat().replace("+00:00", "Z")


class QueryResponse(_Out):
    """Today's snake_case fields, and beside them the camelCase ones of the SDK's `Query` /
    `QueryWithResult` (`datasetId` is the dataset's UUID, "" for a query over every dataset)."""

    model_config = ConfigDict(populate_by_name=True)
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
    dataset_uuid: str = Field("", alias="datasetId")
    created_user_id: str = Field("pixql", alias="createdUserId")
    result: CoactiveQueryResult | None = None

    @computed_field(alias="queryId")
    def _query_id(self) -> str:
        return self.query_id

    @computed_field(alias="createdDt")
    def _created(self) -> str:
        return _z(self.created_dt)

    @computed_field(alias="startDt")
    def _start(self) -> str | None:
        return _z(self.start_dt)

    @computed_field(alias="endDt")
    def _end(self) -> str | None:
        return _z(self.end_dt)

    @computed_field(alias="updatedDt")
    def _updated(self) -> str:
        return _z(self.end_dt or self.start_dt or self.created_dt)

    @computed_field(alias="updatedUserId")
    def _updated_user(self) -> str:
        return self.created_user_id  # only its owner changes a query (stop)

    @computed_field(alias="isActive")
    def _active(self) -> bool:
        return self.status in ("Queued", "Running", "Stopping")


class QueryList(BaseModel):
    """Today's {queries, total, offset, limit} and the SDK's `PagedQueries` {meta, data} (the same records)."""

    queries: list[QueryResponse]
    total: int
    offset: int
    limit: int
    meta: dict = Field(description="PagedMetaResponse")
    data: list[QueryResponse]


# -- datasets and ingestion ---------------------------------------------------------------------
class Column(BaseModel):
    name: str
    type: str


class Table(BaseModel):
    name: str
    columns: list[Column]


class Dataset(_Out):
    """PixQL's fields (`dataset_id` is the name, as before) and the Coactive SDK's `Dataset` beside them
    (`datasetId` is the UUID).  `encoder` is Coactive's encoder enum, which names no PixQL encoder, so
    it is null; the dataset's PixQL encoder is `default_encoder`."""

    model_config = ConfigDict(populate_by_name=True)
    dataset_id: str = Field(description="The dataset's name (every route takes it, or the UUID).")
    name: str
    dataset_uuid: str = Field(alias="datasetId", description="The dataset's stable UUID.")
    description: str | None = None
    encoder: None = Field(None, description="Coactive's encoder name: none applies (see default_encoder).")
    default_encoder: str
    created_dt: datetime
    updated_dt: datetime
    created_user_id: str = Field(alias="createdUserId")
    updated_user_id: str = Field(alias="updatedUserId")
    status: Literal["Incomplete", "Initializing", "Ready"] = Field(
        description="Initializing while an ingestion job of it is queued or running; Incomplete when empty.")
    asset_count: int
    image_count: int = Field(alias="imageCount")
    video_count: int = Field(alias="videoCount")
    encoders: list[str]
    error_count: int
    tables: list[Table]

    @computed_field(alias="createdDt")
    def _created(self) -> str:
        return _z(self.created_dt)

    @computed_field(alias="updatedDt")
    def _updated(self) -> str:
        return _z(self.updated_dt)

    @computed_field(alias="isDeletable")
    def _deletable(self) -> bool:
        return self.status != "Initializing"


class DatasetList(BaseModel):
    """Coactive's `PagedDatasets`."""

    meta: dict = Field(description="PagedMetaResponse")
    data: list[Dataset]


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
    """PixQL's fields and the Coactive SDK's (`datasetId`, `regularization`): a concept with
    neither prompts nor labels starts empty and trains on its first labels."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str
    description: str | None = None
    prompts: list[str] | None = None
    negative_prompts: list[str] | None = None
    positive: list[str] | None = Field(None, description="coactive_image_id or path of positive examples.")
    negative: list[str] | None = None
    threshold: float | None = Field(None, ge=0, le=1, description="Omitted: the default rule (threshold_source).")
    encoder: str | None = None
    parent: str | None = None
    dataset_id: str | None = Field(None, alias="datasetId", description="Dataset name or id; its encoder is used.")
    regularization: float | None = Field(None, gt=0, description="L2 strength of the labelled fit (1/C; default 10).")


class ConceptUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    name: str | None = Field(None, description="Accepted when unchanged (a concept's name is its SQL column).")
    description: str | None = None
    prompts: list[str] | None = None
    negative_prompts: list[str] | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    parent: str | None = None
    regularization: float | None = Field(None, gt=0)


class LabelRequest(BaseModel):
    """The Coactive SDK's `ConceptLabelRequest`: an asset by id or path; no label withdraws it."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    coactive_image_id: str | None = Field(None, alias="coactiveImageId")
    image_path: str | None = Field(None, alias="imagePath")
    label: Literal["positive", "negative", ""] | None = None


class LabelsPatch(BaseModel):
    """Positive/negative examples by coactive_image_id or path; `remove` (or an empty label) withdraws one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    positive: list[str] = []
    negative: list[str] = []
    remove: list[str] = []
    labels: dict[str, Literal["positive", "negative", ""] | None] | list[LabelRequest] = Field(
        default_factory=dict,
        description="{asset: 'positive' | 'negative' | '' (remove)}, or the SDK's list of "
                    "{coactiveImageId | imagePath, label}")
    autosampled_num_negative_labels: int | None = Field(
        None, ge=0, le=10_000, alias="autosampledNumNegativeLabels",
        description="Also label this many random unlabeled assets negative.")


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
    concept_id: str | None = Field(None, description="Stable UUID; routes take it or the name.")
    dataset: str | None = None
    dataset_id: str = Field("", description="The dataset's id (its name when datasets have no id).")
    regularization: float | None = None
    created_by: str | None = None
    updated_by: str | None = None

    quality: dict[str, Any] | None = Field(
        None, description="A built-in's measured quality on the named dev set: auroc, tpr/fpr at its threshold, "
                          "status (works | weak | chance | unmeasurable) and advice; None for your own concepts.")

    # The Coactive SDK's `Concept` (camelCase) beside PixQL's fields, in the same answer.
    @computed_field(alias="conceptId")
    def concept_id_camel(self) -> str:
        return self.concept_id or ""

    @computed_field(alias="datasetId")
    def dataset_id_camel(self) -> str:
        return self.dataset_id

    @computed_field(alias="createdUserId")
    def created_user_id(self) -> str:
        return self.created_by or "pixql"

    @computed_field(alias="updatedUserId")
    def updated_user_id(self) -> str:
        return self.updated_by or self.created_by or "pixql"

    @computed_field(alias="createdDt")
    def created_dt_camel(self) -> str:
        return _utc_text(self.created_dt)

    @computed_field(alias="updatedDt")
    def updated_dt_camel(self) -> str:
        return _utc_text(self.updated_dt)


def _utc_text(v: datetime) -> str:
    if v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v.isoformat().replace("+00:00", "Z")


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
