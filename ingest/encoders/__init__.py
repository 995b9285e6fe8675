"""The old import path of `encoders` (a top-level package since concepts use it too).

Kept so callers not yet moved keep working; new code imports `encoders`.
"""
from encoders import DEFAULT_ENCODER, check_encoder_spec, get_encoder, normalize_name  # noqa: F401

__all__ = ["get_encoder", "check_encoder_spec", "DEFAULT_ENCODER", "normalize_name"]
