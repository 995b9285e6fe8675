"""The old import path of `encoders` (a top-level package since concepts use it too).

Kept so callers not yet moved (`api/server/jobs.py`, `api/server/state.py`) keep
working; new code imports `encoders`.
"""
from encoders import DEFAULT_ENCODER, get_encoder, normalize_name  # noqa: F401

__all__ = ["get_encoder", "DEFAULT_ENCODER", "normalize_name"]
