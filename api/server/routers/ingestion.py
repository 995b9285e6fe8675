"""`/api/v1/ingestion`: start ingest jobs of server-side paths or uploaded files; watch them advance.

`POST` takes either JSON `{dataset, paths, encoder?}` or a multipart form with
`dataset`, optional `encoder` and one or more `files`; uploads are kept under
`<root>/uploads/<job>/` (fsynced before the 202) because the warehouse reads
images from their paths, also when a job resumes after a crash.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path

from fastapi import APIRouter, Request
from pydantic import ValidationError
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool

from api.intake import IntakeDep, declares

from ..deps import Reader, State, Writer, model_ready
from ..errors import TooLarge
from ..models import IngestJob, IngestRequest
from warehouse import tombstones
from warehouse.errors import Blocked, Invalid

router = APIRouter(prefix="/api/v1/ingestion", tags=["ingestion"])

_OPENAPI_BODY = {
    "requestBody": {
        "content": {
            "application/json": {"schema": IngestRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "dataset": {"type": "string"},
                        "encoder": {"type": "string"},
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                    },
                    "required": ["files"],
                }
            },
        },
        "required": True,
    }
}
_OPENAPI_BODY.update(declares("path", "upload"))  # paths and uploads enter through the intake


def _safe_filename(name: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", (name or "upload").rsplit("/", 1)[-1]).lstrip(".")
    return base[:120] or "upload"


async def save_uploads(state, request: Request, form, field: str = "files", scratch: bool = False) -> list[str]:
    """Write the form's files under uploads/<batch>/; refuse more than the upload limit (413).

    `scratch` files (for classify) go to a temporary directory the caller removes.
    """
    import tempfile

    limit = int(state.settings.max_upload_mb * 1024 * 1024)
    files = [f for f in form.getlist(field) if hasattr(f, "read")]
    if not files:
        raise Invalid(f"no files in form field {field!r}")
    if scratch:
        batch = Path(tempfile.mkdtemp(prefix="pixql-upload-"))
    else:
        batch = state.wh.root / "uploads" / uuid.uuid4().hex[:12]
    batch.mkdir(parents=True, exist_ok=True)
    total, paths = 0, []
    for i, f in enumerate(files):
        dest = batch / f"{i:05d}-{_safe_filename(f.filename)}"
        digest = hashlib.sha256()
        with open(dest, "wb") as out:
            while chunk := await f.read(1 << 20):
                digest.update(chunk)
                total += len(chunk)
                if total > limit:
                    out.close()
                    shutil.rmtree(batch, ignore_errors=True)
                    raise TooLarge(f"uploads exceed {state.settings.max_upload_mb:g} MB")
                out.write(chunk)
            if not scratch:  # an ingestion job reads these after a crash: on disk before the 202
                out.flush()
                os.fsync(out.fileno())
        try:  # erased content under a block tombstone does not come back (403 with the reason)
            tombstones.check(state.cursor(), digest.hexdigest())
        except Blocked:
            shutil.rmtree(batch, ignore_errors=True)
            raise
        paths.append(str(dest))
    if not scratch:
        _fsync_dir(batch)
        _fsync_dir(batch.parent)
    return paths


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


async def _validated(state, data: bytes | dict) -> IngestRequest:
    """The request, validated off the event loop (checking a CLIP encoder imports open_clip)."""
    context = {"path_roots": state.settings.path_roots}
    try:
        if isinstance(data, dict):
            return await run_in_threadpool(IngestRequest.model_validate, data, context=context)
        return await run_in_threadpool(IngestRequest.model_validate_json, data, context=context)
    except ValidationError as e:
        raise RequestValidationError(e.errors(include_url=False, include_context=False)) from None


@router.post("", status_code=202, response_model=IngestJob, openapi_extra=_OPENAPI_BODY)
async def start_ingestion(request: Request, state: State, who: Writer, intake: IntakeDep):
    """Start an ingest job; poll `GET /api/v1/ingestion/{job_id}` for its counts.  Paths must lie under
    `--path-root` (403 otherwise); the job checks each file again when it opens it.  The body
    (uploads) is limited to `--max-upload-mb` while it streams (413)."""
    model_ready(state)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):
        form = await request.form()
        dataset = str(form.get("dataset") or "default")
        encoder = form.get("encoder") or None
        # the encoder is checked before any upload is written
        body = await _validated(state, {"dataset": dataset, "paths": ["(uploads)"], "encoder": encoder})
        paths = await save_uploads(state, request, form)
        body = body.model_copy(update={"paths": paths})
    else:
        body = await _validated(state, await request.body())
        await run_in_threadpool(intake.check_paths, body.paths)
    # The job row is committed before this returns: the 202 names a job that survives a crash.
    return await run_in_threadpool(state.jobs.submit, body.paths, body.dataset, body.encoder, who.name,
                                   engine=body.engine)


@router.get("", response_model=list[IngestJob])
def list_jobs(state: State, who: Reader):
    return state.jobs.list()


@router.get("/{job_id}", response_model=IngestJob)
def get_job(job_id: str, state: State, who: Reader):
    return state.jobs.get(job_id)


@router.post("/{job_id}/stop", response_model=IngestJob)
def stop_job(job_id: str, state: State, who: Writer):
    """Stop a job: a queued one at once, a running one after its current file (committed assets stay)."""
    return state.jobs.stop(job_id)
