"""The moderation taxonomy: two levels, as Amazon Rekognition's, each category a concept.

The categories and their tree are the `category` entries of the one built-in
catalogue (`concepts/catalogue.py`).  Top-level categories group children
(`explicit_nudity` -> `nudity`, ...); a few stand alone (`alcohol`,
`gambling`, ...).  Every category is a concept of the same name, so it is also
a column of `coactive_table`.

Built-in definitions exist where the default encoder's ImageNet classes are the
thing itself (rifles and revolvers for `weapons`, `syringe`, `pill bottle` for
`pills`, ...): the category's probability is the sum of those class
probabilities, a linear head over the stored `probs` vector.  Categories
ImageNet cannot see (nudity, hate symbols, ...) and proxies (`fight`: a
punching bag) start empty: they score nothing until someone labels examples,
and `status()` says so rather than pretending a 0.0 means "clean".

A parent's probability is the max of its children's, unless the parent has a
head of its own (labelled examples of the parent itself), in which case the
larger of the two counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import encoders

from . import catalogue
from warehouse.errors import Invalid

BUILTIN_ENCODER = encoders.DEFAULT_ENCODER


@dataclass(frozen=True)
class Category:
    name: str
    title: str
    parent: str | None = None
    note: str = ""
    entry: catalogue.Entry | None = field(default=None, repr=False, compare=False)

    @cached_property
    def imagenet_classes(self) -> tuple[int, ...]:
        """ImageNet class indices (the default encoder's `probs`) whose probabilities sum to this category's own."""
        e = self.entry
        if e is None or e.proxy or not e.imagenet:
            return ()
        from encoders.imagenet import class_indices

        return tuple(class_indices(encoders.lookup(BUILTIN_ENCODER).class_names, e.imagenet))

    @property
    def has_builtin(self) -> bool:
        e = self.entry
        return bool(e and not e.proxy and e.imagenet)


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    children: tuple[str, ...] = field(default_factory=tuple)


def _build():
    groups = {top: Group(top, title, () if kids == (top,) else kids) for top, title, kids in catalogue.TREE}
    cats = {e.name: Category(e.name, e.title, e.parent, e.note, e) for e in catalogue.CATEGORIES}
    return groups, cats


GROUPS, CATEGORIES = _build()
TOP_LEVEL = tuple(GROUPS)


def children(name: str) -> tuple[str, ...]:
    return GROUPS[name].children if name in GROUPS else ()


def parent(name: str) -> str | None:
    return CATEGORIES[name].parent


def leaves() -> list[str]:
    return [c.name for c in CATEGORIES.values() if not children(c.name)]


def check_category(name: str) -> str:
    if name not in CATEGORIES:
        raise Invalid(
            f"unknown moderation category {name!r}; known: {', '.join(sorted(CATEGORIES))}"
        )
    return name


def combine(own: dict[str, float | None]) -> dict[str, float | None]:
    """Per-category probability from each category's own head (None = no head).

    Parents take the max over their children and their own head; a category
    with no head anywhere stays None (unknown, not zero).
    """
    out: dict[str, float | None] = {}
    for name in CATEGORIES:
        vals = [own.get(name)] + [own.get(c) for c in children(name)]
        vals = [v for v in vals if v is not None]
        out[name] = max(vals) if vals else None
    return out


# -- the categories as concepts ----------------------------------------------------------------
def ensure_concepts(wh, materialize: bool = True) -> list[str]:
    """Create, through the concept registry, every category with a built-in definition that is
    not a concept yet; return the names created.

    A parent with built-in children gets the union of their ImageNet classes as
    its own head (`catalogue.moderation_definition`).  A concept the user already
    made under a category's name is left alone: it *is* the category.  Needs
    the default encoder to be registered (after the first ingest).
    """
    from . import registry
    from .heads import ConceptError

    con = wh.cursor()
    if BUILTIN_ENCODER not in {r[0] for r in con.execute("SELECT name FROM catalog.encoders").fetchall()}:
        return []
    made = []
    order = [n for n in CATEGORIES if parent(n) is None] + [n for n in CATEGORIES if parent(n) is not None]
    for name in order:
        cat = CATEGORIES[name]
        definition = catalogue.moderation_definition(cat.entry)
        if definition is None or registry.exists(wh, name):
            continue
        par = cat.parent if cat.parent and registry.exists(wh, cat.parent) else None
        try:
            if catalogue.create(wh, definition, BUILTIN_ENCODER, parent=par, materialize=materialize):
                made.append(name)
        except ConceptError as e:
            if not registry.exists(wh, name):  # not a race with another creator: a real problem
                raise ConceptError(f"cannot create moderation category {name!r} as a concept: {e}") from e
    return made


def report(wh) -> list[dict]:
    """Each category, its parent, and what scores it: a concept version, or nothing yet."""
    con = wh.cursor()
    rows = {r[0]: r[1:] for r in con.execute(
        "SELECT c.name, c.latest_version, v.kind, v.encoder, c.threshold FROM catalog.concepts c "
        "LEFT JOIN catalog.concept_versions v ON v.concept = c.name AND v.version = c.latest_version").fetchall()}
    from . import quality
    from .moderation.analyzed import model_categories

    models = model_categories()
    out = []
    for name, cat in CATEGORIES.items():
        r = rows.get(name)
        model = f" and {models[name]}" if name in models else ""
        if r and r[0]:
            state = f"concept v{r[0]} ({r[1]} head on {r[2]}){model}"
        elif name in models:
            state = f"{models[name]}" + (" (and the max of its children)" if children(name) else "")
        elif children(name) and any(rows.get(c) or c in models for c in children(name)):
            state = "max of its children"
        else:
            state = "empty: no head until labelled (feedback with this category adds labels)"
        out.append({"category": name, "title": cat.title, "parent": cat.parent, "children": list(children(name)),
                    "builtin": cat.note or None, "concept_version": r[0] if r else None, "state": state,
                    "model": models.get(name), "quality": quality.category(name),
                    "scored": bool(r and r[0]) or name in models
                    or any(rows.get(c) or c in models for c in children(name))})
    return out
