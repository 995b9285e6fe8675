"""`POST /api/v1/classify`: score images against concepts without adding them (Coactive tutorial 3.1).

Images come as server-side `paths`, http(s) `urls` or uploaded `files`
(multipart), all through the intake (`api.intake`): paths under `--path-root`,
URLs by its one downloader, the body within `--max-upload-mb`.  More than
`max_classify_assets` images is a 413 before anything is read or fetched.  Each
file is copied into a scratch directory as the intake opens it, so what is
scored is what was checked.  Scoring is `concepts.classify`; this route only
gathers the files and shapes the answer: per asset, each concept's `score`,
`threshold` and `positive`, and the list of positive tags.

`POST /api/v1/classify/image/url` is the Coactive SDK's `classify_image_at_url`:
one URL, the same scoring, answered as `{"scores": [{conceptName, conceptId, ...}]}`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from api.intake import Intake, IntakeDep, declares

from ..deps import State, Writer, model_ready
from ..errors import TooLarge
from ..models import ClassifyRequest, ClassifyResponse
from ..models_coactive import Classification, ClassifyUrl
from .ingestion import _safe_filename
from warehouse.errors import Invalid

router = APIRouter(prefix="/api/v1", tags=["classify"])

_OPENAPI_BODY = declares("path", "url", "upload", requestBody={
        "content": {
            "application/json": {"schema": ClassifyRequest.model_json_schema()},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                        "concepts": {"type": "string", "description": "comma-separated names"},
                        "threshold": {"type": "number"},
                    },
                    "required": ["files"],
                }
            },
        },
        "required": True,
})


def _gather(intake: Intake, req: ClassifyRequest, into: Path, uploads: int, limit: int):
    """Copy the request's paths and URLs into `into` through the intake.

    Returns ({scratch path: what the client named}, [(name, error)]); refuses (403/413) before
    reading anything when a path or URL is not allowed or there are too many images.
    """
    url_problems = intake.check_urls(req.urls or [])
    sources = intake.check_paths(req.paths or [])
    count = len(sources) + len(req.urls or []) + uploads
    if count > limit:
        raise TooLarge(f"{count} images in one request; the limit is {limit}")
    named, errors = {}, []
    for i, src in enumerate(sources):
        if src.problem:
            errors.append((str(src.path), None, src.problem))
            continue
        dest = into / f"p{i:05d}-{_safe_filename(src.path.name)}"
        try:
            with intake.open(src.path) as fh, open(dest, "wb") as out:
                shutil.copyfileobj(fh, out, 1 << 20)
        except OSError as e:  # refused when opened (a link swapped in), or unreadable
            errors.append((str(src.path), None, str(e) if isinstance(e, PermissionError) else
                           f"cannot read file: {e.strerror or e}"))
            continue
        named[str(dest.resolve())] = (str(src.path), None)
    for i, url in enumerate(req.urls or []):
        if url in url_problems:
            errors.append((url, url, url_problems[url]))
            continue
        try:
            data, name = intake.fetch(url)
        except (ValueError, PermissionError) as e:  # one bad URL does not fail the batch
            errors.append((url, url, str(e)))
            continue
        dest = into / f"u{i:05d}-{_safe_filename(name or urlparse(url).path) or 'download'}"
        dest.write_bytes(data)
        named[str(dest.resolve())] = (url, url)
    return named, errors


def _classify(state, intake: Intake, req: ClassifyRequest, uploaded: list[str],
              upload_names: dict | None = None) -> ClassifyResponse:
    from concepts import registry
    from concepts.classify import classify

    tmp = Path(tempfile.mkdtemp(prefix="pixql-classify-"))
    try:
        named, errors = _gather(intake, req, tmp, len(uploaded), state.settings.max_classify_assets)
        named.update({p: (n, None) for p, n in (upload_names or {}).items()})
        paths = list(named)
        if not paths and not errors:
            raise Invalid("nothing to classify: give paths, urls or files")
        names = req.concepts
        thresholds = {c.name: c.threshold for c in (
            registry.list_concepts(state.wh) if names is None else [registry.get(state.wh, n) for n in names])}
        raw = classify(state.wh, paths, concepts=names) if paths else []
        results = []
        for r in raw:
            scores = []
            for name, p in r["probabilities"].items():
                t = req.threshold if req.threshold is not None else thresholds.get(name, 0.5)
                scores.append({"name": name, "score": p, "threshold": t, "positive": p >= t})
            shown, url = named.get(r["path"], (r["path"], None))
            results.append({
                "path": shown, "url": url, "coactive_image_id": r["coactive_image_id"],
                "concepts": scores, "classification": [s["name"] for s in scores if s["positive"]],
                "error": r["error"],
            })
        results += [{"path": shown, "url": url, "error": e} for shown, url, e in errors]
        return ClassifyResponse(results=results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=_OPENAPI_BODY)
async def classify_assets(request: Request, state: State, who: Writer, intake: IntakeDep):
    """Per image: each concept's score, threshold and positive flag, and the tags above threshold."""
    model_ready(state)
    uploaded: list[str] = []
    upload_names: dict[str, str] = {}
    batch = None
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            form = await request.form()
            from .ingestion import save_uploads

            concepts = [c.strip() for c in str(form.get("concepts") or "").split(",") if c.strip()] or None
            threshold = form.get("threshold")
            req = ClassifyRequest(concepts=concepts, threshold=float(threshold) if threshold else None,
                                  embedding_id=form.get("embedding_id") or None)
            uploaded = await save_uploads(state, request, form, scratch=True)
            batch = Path(uploaded[0]).parent
            # Answer with the names the client sent, not the server's scratch paths.
            originals = [f.filename for f in form.getlist("files") if hasattr(f, "read")]
            upload_names = {str(Path(p).resolve()): n for p, n in zip(uploaded, originals)}
        else:
            try:
                req = ClassifyRequest.model_validate_json(await request.body())
            except ValidationError as e:
                raise RequestValidationError(e.errors()) from None
        return await run_in_threadpool(_classify, state, intake, req, uploaded, upload_names)
    finally:
        if batch is not None:
            shutil.rmtree(batch, ignore_errors=True)


def concept_ids(con) -> dict[str, str]:
    """{concept name: its id}: the stable id where the catalog keeps one, else the name (which
    is unique and stable too: concepts are never renamed)."""
    has_id = con.execute("SELECT count(*) FROM information_schema.columns WHERE table_schema = 'catalog'"
                         " AND table_name = 'concepts' AND column_name = 'concept_id'").fetchone()[0]
    sql = "SELECT name, coalesce(concept_id, name) FROM catalog.concepts" if has_id else \
        "SELECT name, name FROM catalog.concepts"
    return dict(con.execute(sql).fetchall())


@router.post("/classify/image/url", response_model=Classification, openapi_extra=declares("url"))
async def classify_image_at_url(body: ClassifyUrl, state: State, who: Writer, intake: IntakeDep,
                                threshold: float | None = Query(None, ge=0, le=1,
                                                                description="Overrides each concept's threshold.")):
    """Score the image at one http(s) URL against concepts (`conceptIds`: ids or names; default every one)."""
    model_ready(state)
    ids = await run_in_threadpool(concept_ids, state.cursor())
    names = None
    if body.concept_ids is not None:
        by_id = {v: k for k, v in ids.items()}
        names = [by_id.get(c, c) for c in body.concept_ids]  # an unknown one is the registry's 404
    req = ClassifyRequest(urls=[body.url], concepts=names, threshold=threshold)
    out = (await run_in_threadpool(_classify, state, intake, req, [])).results[0]
    if out.error:
        raise Invalid(f"{body.url}: {out.error}")
    return Classification(scores=[{"concept_name": c.name, "concept_id": ids.get(c.name, c.name),
                                   "threshold": c.threshold, "positive": c.positive,
                                   "score": c.score} for c in out.concepts])
