"""Moderation over HTTP: moderate, the queue, manual overrides, feedback, policies, the result cache.

    POST   /api/v1/moderate                     items (<= 50 sync) or callback_url (async, 202 + task_id)
    GET    /api/v1/moderate/tasks/{task_id}     an async task and its result
    POST   /api/v1/moderate/tasks/{task_id}/redeliver      send its callback again
    GET    /api/v1/moderate/tasks/{task_id}/deliveries     callback attempts
    GET    /api/v1/moderation?status=review&offset=&limit=  the queue
    GET    /api/v1/moderation/categories        the taxonomy and what scores each category
    GET    /api/v1/moderation/cache             cache stats;  DELETE clears (all, ?sha256=, ?expired_only=)
    GET    /api/v1/moderation/webhook-secret    (admin) the key callbacks are signed with
    GET    /api/v1/assets/{id}/moderation       current status and history
    PUT    /api/v1/assets/{id}/moderation       manual override {status, reason} (write scope)
    POST   /api/v1/feedback                     {coactive_image_id | path | url, verdict, categories?} (write)
    GET    /api/v1/feedback   DELETE /api/v1/feedback/{id}
    GET|POST /api/v1/policies   GET|PUT|DELETE /api/v1/policies/{name}   GET /api/v1/policies/{name}/versions

`POST /api/v1/moderate` also takes a multipart form: `files` (uploads), and the
fields `policy`, `callback_url`, `dataset`.  Writes need the write scope.
Paths, URLs, uploads and callback URLs go through the intake (`api.intake`):
refused with 403 before anything is read when outside `--path-root`, under
`--no-url-fetch`, or at a loopback/private/link-local address.
"""
from __future__ import annotations

import json
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from starlette.concurrency import run_in_threadpool

from api.intake import Intake, IntakeDep, declares
from api.webhooks import webhook_secret
from concepts import policy as policies
from concepts import taxonomy
from concepts.moderation import MAX_SYNC_ITEMS, Item

from .. import models_moderation as M
from ..deps import Admin, Reader, State, Writer, model_ready
from ..errors import NotFound, TooLarge
from ..moderation_tasks import service
from warehouse.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["moderation"])
MAX_ASYNC_ITEMS = 1000


class ModerateItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, max_length=200, description="Your own reference, echoed back (Alibaba's dataId).")
    path: str | None = Field(None, description="A file on the server.")
    url: str | None = Field(None, description="http(s) URL the server fetches.")
    coactive_image_id: str | None = None
    coactive_video_id: str | None = None

    @model_validator(mode="after")
    def _one(self):
        given = [k for k in ("path", "url", "coactive_image_id", "coactive_video_id") if getattr(self, k)]
        if len(given) != 1:
            raise Invalid("each item needs exactly one of path, url, coactive_image_id, coactive_video_id")
        return self


class ModerateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    items: list[ModerateItem] = Field(min_length=1, description=f"At most {MAX_SYNC_ITEMS} without callback_url.")
    policy: str | dict[str, Any] | None = Field(
        None, description="A policy name, a name with overrides ('strict:weapons:0.3'), or JSON; default 'default'.")
    callback_url: str | None = Field(None, description="Moderate asynchronously and POST the result here.")
    dataset: str | None = Field(None, description="Dataset new files are ingested into (default 'moderation').")
    use_cache: bool = True


class OverrideRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["approved", "rejected", "review"]
    reason: str | None = Field(None, max_length=2000)


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    coactive_image_id: str | None = None
    path: str | None = None
    url: str | None = None
    verdict: Literal["block", "pass"]
    categories: list[str] = Field(default_factory=list)
    comment: str | None = Field(None, max_length=2000)


_MODERATE_BODY = declares("path", "url", "upload", requestBody={
    "content": {
        "application/json": {"schema": ModerateRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
            "policy": {"type": "string"}, "callback_url": {"type": "string"}, "dataset": {"type": "string"},
        }, "required": ["files"]}},
    },
    "required": True,
})
_FEEDBACK_BODY = declares("path", "url", "upload", requestBody={
    "content": {
        "application/json": {"schema": FeedbackRequest.model_json_schema()},
        "multipart/form-data": {"schema": {"type": "object", "properties": {
            "file": {"type": "string", "format": "binary"}, "verdict": {"type": "string"},
            "categories": {"type": "string"}, "comment": {"type": "string"},
        }, "required": ["file", "verdict"]}},
    },
    "required": True,
})


def _validated(model, raw: bytes):
    try:
        return model.model_validate_json(raw)
    except ValidationError as e:
        raise RequestValidationError(e.errors()) from None


def _check_items(intake: Intake, items) -> None:
    """403 for any path outside the roots or any URL the server will not fetch, before anything is read."""
    for it in items:
        if it.path:
            intake.check_file(it.path)
    intake.check_urls([it.url for it in items if it.url])


def _policy(con, spec):
    return policies.resolve(con, spec)


@router.post("/moderate", openapi_extra=_MODERATE_BODY,
             response_model=M.ModerationReport, response_model_exclude_unset=True,
             responses={202: {"model": M.ModerationTask, "description": "Accepted (with callback_url): the task."}})
async def moderate(request: Request, state: State, who: Writer, intake: IntakeDep):
    """Moderate up to 50 items now, or more with `callback_url` (202 and a task id; the result is POSTed,
    signed, to the callback).  Each result: `status` (approved | rejected | review | error), the
    `categories` that triggered with scores and thresholds, `reasons`, `similar` (a feedback-listed
    look-alike), and `output` in Hive's shape `[{time, classes: [{class, score}]}]` (one entry per keyframe)."""
    model_ready(state)
    svc = service(state)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        uploads = [f for f in form.getlist("files") if hasattr(f, "read")]
        if not uploads:
            raise Invalid("no files in form field 'files'")
        policy = form.get("policy") or None
        callback_url = form.get("callback_url") or None
        dataset = form.get("dataset") or None
        _limit(len(uploads), callback_url)
        limit = int(state.settings.max_upload_mb * 1024 * 1024)
        items, total = [], 0
        for f in uploads:
            data = await f.read()
            total += len(data)
            if total > limit:
                raise TooLarge(f"uploads exceed {state.settings.max_upload_mb:g} MB")
            items.append(Item(data=data, filename=f.filename, id=f.filename))
        use_cache = True
    else:
        body = _validated(ModerateRequest, await request.body())
        _limit(len(body.items), body.callback_url)
        await run_in_threadpool(_check_items, intake, body.items)
        items = [Item(**it.model_dump()) for it in body.items]
        policy, callback_url, dataset, use_cache = body.policy, body.callback_url, body.dataset, body.use_cache
    await run_in_threadpool(intake.check_callback, callback_url)
    _policy(state.cursor(), policy)  # a bad policy is a 400/404 now, not a failed task later
    if callback_url:
        # uploads are written to disk now; the task keeps their paths
        stored = [it if it.data is None else Item(path=str(svc.moderator.intake(it)[0]), id=it.id) for it in items]
        raw = [{k: v for k, v in vars(it).items() if v is not None and k not in ("data", "filename")} for it in stored]
        task = await run_in_threadpool(svc.submit, raw, policy, callback_url, dataset, who.name)
        from fastapi.responses import JSONResponse
        from fastapi.encoders import jsonable_encoder

        return JSONResponse(jsonable_encoder(task), status_code=202)
    return await run_in_threadpool(svc.moderator.moderate, items, policy, who.name, None, use_cache, dataset)


def _limit(n: int, callback_url: str | None) -> None:
    if callback_url is None and n > MAX_SYNC_ITEMS:
        raise TooLarge(f"a synchronous moderation takes at most {MAX_SYNC_ITEMS} items, got {n}: "
                       "split the batch, or pass callback_url to moderate asynchronously")
    if n > MAX_ASYNC_ITEMS:
        raise TooLarge(f"a moderation request takes at most {MAX_ASYNC_ITEMS} items, got {n}")


@router.get("/moderate/tasks/{task_id}", response_model=M.ModerationTask, response_model_exclude_unset=True)
def get_task(task_id: str, state: State, who: Reader):
    return service(state).task(task_id)


@router.post("/moderate/tasks/{task_id}/redeliver", status_code=202, response_model=M.Redelivery)
def redeliver(task_id: str, state: State, who: Writer):
    """POST the task's result to its callback again (a new X-PixQL-Delivery id, the same signed body)."""
    svc = service(state)
    svc.task(task_id, with_result=False)
    return {"task_id": task_id, "delivery_id": svc.sender.redeliver(task_id)}


@router.get("/moderate/tasks/{task_id}/deliveries", response_model=M.Deliveries)
def deliveries(task_id: str, state: State, who: Reader):
    svc = service(state)
    task = svc.task(task_id, with_result=False)
    return {"task_id": task_id, "delivery_status": task["delivery_status"], "attempts": svc.sender.attempts(task_id)}


@router.get("/moderation", response_model=M.ModerationQueue)
def moderation_queue(state: State, who: Reader,
                     status: Literal["approved", "rejected", "review", "pending"] | None = Query(None),
                     dataset: str | None = None,
                     offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=1000)):
    """Assets and videos by current status (manual overrides win), newest decision first."""
    return service(state).moderator.queue(status, offset, limit, dataset)


@router.get("/moderation/categories", response_model=M.Categories)
def categories(state: State, who: Reader):
    from concepts.moderation import scoring

    con = state.cursor()
    return {"categories": taxonomy.report(state.wh), "unscored_categories": scoring.unscored(con),
            "unreliable_categories": scoring.unreliable(con)}


@router.get("/moderation/cache", response_model=M.CacheStats)
def cache_stats(state: State, who: Reader):
    return service(state).moderator.cache_stats()


@router.delete("/moderation/cache", response_model=M.CacheCleared)
def clear_cache(state: State, who: Writer, sha256: str | None = None, expired_only: bool = False):
    return {"removed": service(state).moderator.clear_cache(sha256, expired_only)}


@router.get("/moderation/webhook-secret", response_model=M.WebhookSecret)
def get_webhook_secret(state: State, who: Admin):
    """The HMAC-SHA256 key of `X-PixQL-Signature: sha256=<hex>` on callbacks."""
    return {"secret": webhook_secret(state.cursor(), state.wh.write_lock), "header": "X-PixQL-Signature",
            "algorithm": "HMAC-SHA256 over the raw request body, hex, prefixed 'sha256='"}


@router.get("/assets/{asset_id}/moderation", response_model=M.SubjectModeration)
def asset_moderation(asset_id: str, state: State, who: Reader):
    return service(state).moderator.decision(asset_id)


@router.put("/assets/{asset_id}/moderation", response_model=M.SubjectModeration)
def override(asset_id: str, body: OverrideRequest, state: State, who: Writer):
    """A moderator's decision; recorded with who and why, and never undone by a later model run."""
    return service(state).moderator.override(asset_id, body.status, body.reason, who.name)


@router.post("/feedback", status_code=201, openapi_extra=_FEEDBACK_BODY, response_model=M.FeedbackOut)
async def feedback(request: Request, state: State, who: Writer, intake: IntakeDep):
    """Put an image on the block or pass list (later look-alikes get its verdict); with `categories`,
    also a positive (block) or negative (pass) label on those category concepts.  JSON, or a multipart
    form with `file`, `verdict`, `categories` (comma-separated) and `comment`."""
    svc = service(state)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        form = await request.form()
        f = form.get("file")
        if not hasattr(f, "read"):
            raise Invalid("no file in form field 'file'")
        cats = [c.strip() for c in str(form.get("categories") or "").split(",") if c.strip()]
        body = FeedbackRequest(verdict=str(form.get("verdict") or ""), categories=cats,
                               comment=form.get("comment") or None)
        item = Item(data=await f.read(), filename=f.filename)
    else:
        body = _validated(FeedbackRequest, await request.body())
        await run_in_threadpool(_check_items, intake, [body])
        item = Item(path=body.path, url=body.url, coactive_image_id=body.coactive_image_id)
    model_ready(state)
    return await run_in_threadpool(svc.moderator.feedback, item, body.verdict, body.categories, who.name,
                                   body.comment)


@router.get("/feedback", response_model=M.FeedbackList)
def list_feedback(state: State, who: Reader, verdict: Literal["block", "pass"] | None = None):
    return {"items": service(state).moderator.feedback_list(verdict)}


@router.delete("/feedback/{asset_id}", status_code=204)
def delete_feedback(asset_id: str, state: State, who: Writer):
    if not service(state).moderator.remove_feedback(asset_id):
        raise NotFound(f"{asset_id!r} is on no feedback list")


# -- policies ------------------------------------------------------------------------------------
async def _policy_body(request: Request, name: str | None = None) -> policies.Policy:
    raw = await request.body()
    try:
        obj = json.loads(raw or b"null")
    except json.JSONDecodeError as e:
        raise Invalid(f"body is not JSON: {e}") from None
    if isinstance(obj, str):
        obj = {"spec": obj}
    if not isinstance(obj, dict):
        raise Invalid('send {"spec": "<name>:<category>:<value>..."} or {"name", "thresholds", ...}')
    if name is not None:
        if obj.get("spec"):
            spec_name = obj["spec"].split(":", 1)[0]
            if spec_name != name:
                raise Invalid(f"the spec names policy {spec_name!r}, the URL {name!r}")
        obj.setdefault("name", name)
    return policies.from_json(obj)


@router.get("/policies", response_model=M.PolicyList)
def list_policies(state: State, who: Reader):
    return {"policies": [p.to_json() for p in policies.list_all(state.cursor())]}


@router.post("/policies", status_code=201, response_model=M.PolicyOut)
async def create_policy(request: Request, state: State, who: Writer):
    """`{"spec": "strict:female_underwear:0.85:explicit_nudity:0.7:revealing_clothes:ignore"}` or
    `{"name": "strict", "thresholds": {"weapons": 0.3, "alcohol": "ignore"}, "review_band": 0.1,
    "similarity": 0.85}`.  An existing name gets a new version."""
    pol = await _policy_body(request)
    with state.wh.write_lock:
        return policies.save(state.cursor(), pol, who.name).to_json()


@router.get("/policies/{name}", response_model=M.PolicyOut)
def get_policy(name: str, state: State, who: Reader, version: int | None = Query(None, ge=1)):
    return policies.get(state.cursor(), name, version).to_json()


@router.get("/policies/{name}/versions", response_model=M.PolicyVersions)
def policy_versions(name: str, state: State, who: Reader):
    vs = policies.versions(state.cursor(), name)
    if not vs:
        raise NotFound(f"unknown policy {name!r}")
    return {"name": name, "versions": [p.to_json() for p in vs]}


@router.put("/policies/{name}", response_model=M.PolicyOut)
async def put_policy(name: str, request: Request, state: State, who: Writer):
    """Replace the policy's settings: version N+1 (old versions stay, decisions name theirs)."""
    pol = await _policy_body(request, name)
    with state.wh.write_lock:
        return policies.save(state.cursor(), pol, who.name).to_json()


@router.delete("/policies/{name}", status_code=204)
def delete_policy(name: str, state: State, who: Writer):
    with state.wh.write_lock:
        if not policies.delete(state.cursor(), name):
            raise NotFound(f"unknown policy {name!r}")
