"""Coactive SDK calls PixQL does not offer: `dynamic_tags.*` and `credentials.*` answer 501 naming the call.

Credentials: PixQL reads storage with the server's own rights (`--path-root`,
the process's cloud credentials), so there is nothing to upload or test.
Dynamic tags: Coactive's prompt-driven tags over categories; PixQL's concepts
(with `parent` as the category) cover the use, through `/api/v1/concepts`.
The body of each answer says which SDK call it was and what to use instead, so
the SDK raises `ApiError(status_code=501, body=...)` with a reason.
"""
from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ..deps import Reader
from ..models_coactive import NotSupported

router = APIRouter(prefix="/api/v1", tags=["coactive (unsupported)"])

_TAGS = ("dynamic tags are not supported: use concepts (POST /api/v1/concepts, with `parent` as the "
         "category) and their columns in coactive_table")
_CREDS = "credentials are not supported: PixQL reads storage with the server's own rights (see --path-root)"
_ANY_BODY = {"requestBody": {"content": {"application/json": {"schema": {"type": "object"}},
                                         "multipart/form-data": {"schema": {"type": "object"}}},
                             "required": False, "description": "Not read: the call is not supported."}}

# (method, path, SDK call, reason)
CALLS = [
    ("GET", "/dynamic-tag-categories", "dynamic_tags.list_categories", _TAGS),
    ("POST", "/dynamic-tag-categories", "dynamic_tags.create_category", _TAGS),
    ("GET", "/dynamic-tag-categories/{category_id}", "dynamic_tags.get_category", _TAGS),
    ("DELETE", "/dynamic-tag-categories/{category_id}", "dynamic_tags.delete_category", _TAGS),
    ("GET", "/dynamic-tag-categories/{category_id}/dynamic-tags", "dynamic_tags.list_dynamic_tags", _TAGS),
    ("POST", "/dynamic-tag-categories/{category_id}/dynamic-tags", "dynamic_tags.create_dynamic_tag", _TAGS),
    ("GET", "/dynamic-tag-categories/{category_id}/dynamic-tags/{dynamic_tag_id}", "dynamic_tags.get_dynamic_tag",
     _TAGS),
    ("PUT", "/dynamic-tag-categories/{category_id}/dynamic-tags/{dynamic_tag_id}",
     "dynamic_tags.update_dynamic_tag", _TAGS),
    ("DELETE", "/dynamic-tag-categories/{category_id}/dynamic-tags/{dynamic_tag_id}",
     "dynamic_tags.delete_dynamic_tag", _TAGS),
    ("GET", "/dynamic-tag-categories/{category_id}/dynamic-tags/{dynamic_tag_id}/top-content",
     "dynamic_tags.get_top_content", _TAGS),
    ("POST", "/credentials/aws", "credentials.add_aws_credentials", _CREDS),
    ("POST", "/credentials/gcp", "credentials.add_gcp_credentials", _CREDS),
    ("POST", "/credentials/validate", "credentials.test", _CREDS),
]


def _route(call: str, reason: str):
    def unsupported(request: Request, who: Reader):
        return JSONResponse({"detail": f"{call}: {reason}", "call": call}, status_code=501)

    unsupported.__name__ = call.replace(".", "_")
    unsupported.__doc__ = f"Not supported (501): {reason}."
    return unsupported


for _method, _path, _call, _reason in CALLS:
    router.add_api_route(_path, _route(_call, _reason), methods=[_method], status_code=501,
                         response_model=NotSupported, summary=f"{_call} (501)",
                         openapi_extra=_ANY_BODY if _method in ("POST", "PUT") else None)
