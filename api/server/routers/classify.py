"""`POST /api/v1/classify`: score images against concepts without adding them (Coactive tutorial 3.1).

Images come as server-side `paths`, http(s) `urls` (downloaded with a size and
time limit), or uploaded `files` (multipart).  Scoring is `concepts.classify`;
this route only gathers the files and shapes the answer: per asset, each
concept's `score`, `threshold` and `positive`, and the list of positive tags.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import httpx
from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from ..deps import State, Writer, model_ready
from ..errors import TooLarge
from ..models import ClassifyRequest, ClassifyResponse
from ..settings import check_server_paths
from .ingestion import _safe_filename, check_length
from warehouse.errors import Forbidden, Invalid

router = APIRouter(prefix="/api/v1", tags=["classify"])

MAX_URL_BYTES = 50 * 1024 * 1024

_OPENAPI_BODY = {
    "requestBody": {
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
    }
}


def _download(urls: list[str], into: Path) -> tuple[list[str], dict[str, str]]:
    """Fetch each URL to a file; returns (paths, {url: error}) so one bad URL does not fail the batch."""
    paths, errors = [], {}
    with httpx.Client(timeout=20, follow_redirects=True) as http:
        for i, url in enumerate(urls):
            scheme = urlparse(url).scheme
            if scheme not in ("http", "https"):
                errors[url] = f"unsupported URL scheme {scheme!r}: use http or https"
                continue
            dest = into / f"{i:05d}-{_safe_filename(urlparse(url).path) or 'download'}"
            try:
                with http.stream("GET", url) as r:
                    if r.status_code != 200:
                        errors[url] = f"download failed: HTTP {r.status_code}"
                        continue
                    size = 0
                    with open(dest, "wb") as out:
                        for chunk in r.iter_bytes():
                            size += len(chunk)
                            if size > MAX_URL_BYTES:
                                raise TooLarge(f"{url} is larger than {MAX_URL_BYTES >> 20} MB")
                            out.write(chunk)
            except httpx.HTTPError as e:
                errors[url] = f"download failed: {e}"
                continue
            except TooLarge as e:
                errors[url] = str(e)
                continue
            paths.append((url, str(dest)))
    return paths, errors


def _classify(state, req: ClassifyRequest, uploaded: list[str], upload_names: dict | None = None) -> ClassifyResponse:
    from concepts import registry
    from concepts.classify import classify
    from ingest.sources import expand

    check_server_paths(state.settings, list(req.paths or []))
    if req.urls and not state.settings.url_fetch:
        raise Forbidden("this server does not fetch URLs (started with --no-url-fetch)")
    tmp = Path(tempfile.mkdtemp(prefix="pixql-classify-"))
    try:
        downloaded, url_errors = _download(req.urls or [], tmp)
        by_path = {p: u for u, p in downloaded}
        paths = list(req.paths or []) + uploaded + [p for _, p in downloaded]
        count = len(expand(paths)) if paths else 0
        if count + len(url_errors) == 0:
            raise Invalid("nothing to classify: give paths, urls or files")
        if count > state.settings.max_classify_assets:
            raise TooLarge(f"{count} images in one request; the limit is {state.settings.max_classify_assets}")
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
            url = by_path.get(r["path"])
            results.append({
                "path": url or (upload_names or {}).get(r["path"]) or r["path"], "url": url, "coactive_image_id": r["coactive_image_id"],
                "concepts": scores, "classification": [s["name"] for s in scores if s["positive"]],
                "error": r["error"],
            })
        results += [{"path": u, "url": u, "error": e} for u, e in url_errors.items()]
        return ClassifyResponse(results=results)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@router.post("/classify", response_model=ClassifyResponse, openapi_extra=_OPENAPI_BODY)
async def classify_assets(request: Request, state: State, who: Writer):
    """Per image: each concept's score, threshold and positive flag, and the tags above threshold."""
    model_ready(state)
    uploaded: list[str] = []
    upload_names: dict[str, str] = {}
    batch = None
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            check_length(state, request)
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
        return await run_in_threadpool(_classify, state, req, uploaded, upload_names)
    finally:
        if batch is not None:
            shutil.rmtree(batch, ignore_errors=True)
