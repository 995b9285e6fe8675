"""Text (zero-shot) heads: a concept from positive and optional negative prompts.

The encoder builds the head on its text side (`Encoder.text_head`): ConSE over
the class probabilities on ImageNet encoders (`encoders/conse.py`), the text
tower on CLIP (`encoders/clip.py`).  This module cleans the prompts, refuses
encoders without a text side, and stores the result as a `HeadSpec` of kind
`text`.
"""
from __future__ import annotations

from .heads import ConceptError, HeadSpec, encoder_of


def _clean(prompts) -> list[str]:
    if isinstance(prompts, str):
        prompts = [prompts]
    out = [p.strip() for p in (prompts or []) if p and p.strip()]
    for p in out:
        if len(p) > 500:
            raise ConceptError("a prompt is limited to 500 characters")
    return out


def text_head(encoder: str, prompts, negatives=None, class_names: list[str] | None = None) -> HeadSpec:
    prompts, negatives = _clean(prompts), _clean(negatives)
    if not prompts:
        raise ConceptError("a text concept needs at least one non-empty prompt")
    enc = encoder_of(encoder)
    if enc is None or enc.text_column is None:
        raise ConceptError(f"encoder {encoder!r} has no text side: define the concept from labelled examples")
    return HeadSpec("text", encoder, **enc.text_head(prompts, negatives, class_names))
