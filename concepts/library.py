"""The built-in starter library of moderation concepts (`pixql concepts install-defaults`).

The entries are the `library` entries of the one built-in catalogue
(`concepts/catalogue.py`), made into heads by the encoder's one rule: on
ImageNet encoders the sum of the named ImageNet classes' probabilities
(`MAPS_TO` lists them), on CLIP encoders the text tower on plain-English
prompts.  Entries marked *proxy* have no ImageNet class of their own and fire
on related objects only: label examples (`pixql concept label`) or use a CLIP
encoder for them.  A library concept that is also a moderation category
(`syringe`, `fight`, ...) gets its category as parent when that concept exists.
"""
from __future__ import annotations

from . import catalogue

DEFAULTS = catalogue.LIBRARY
MAPS_TO = {e.name: list(e.imagenet) for e in DEFAULTS}


def install_defaults(wh, encoder: str | None = None, names=None, created_by: str = "library") -> list[str]:
    """Create the library's concepts that do not exist yet; score them in one pass. Returns the created names.

    `created_by` is accepted for callers; built-in heads carry no labels to attribute it to."""
    from .registry import default_encoder, exists, materialize

    encoder = encoder or default_encoder(wh)
    wanted = set(names) if names else None
    created = []
    for e in DEFAULTS:
        if (wanted and e.name not in wanted) or exists(wh, e.name):
            continue
        parent = e.parent if e.parent and exists(wh, e.parent) else None
        if catalogue.create(wh, e, encoder, parent=parent, materialize=False):
            created.append(e.name)
    if created:
        materialize(wh, created)
    return created
