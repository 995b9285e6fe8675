"""The moderation taxonomy: two levels, as Amazon Rekognition's, each category a concept.

Top-level categories group children (`explicit_nudity` -> `nudity`, ...); a few
stand alone (`alcohol`, `gambling`, ...).  Every category is a concept of the
same name, so it is also a column of `coactive_table`.

Built-in definitions exist for the default encoder `imagenet-lite0` where
ImageNet has classes that are the thing itself (rifles and revolvers for
`weapons`, `syringe`, `pill bottle` for `pills`, ...): the category's probability
is the sum of those class probabilities, a linear head over the stored `probs`
vector.  Categories ImageNet cannot see (nudity, hate symbols, ...) start empty:
they score nothing until someone labels examples, and `status()` says so
rather than pretending a 0.0 means "clean".

A parent's probability is the max of its children's, unless the parent has a
head of its own (labelled examples of the parent itself), in which case the
larger of the two counts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

BUILTIN_ENCODER = "imagenet-lite0"


@dataclass(frozen=True)
class Category:
    name: str
    title: str
    parent: str | None = None
    # ImageNet class indices (imagenet-lite0 `probs`) whose probabilities sum to this category's.
    imagenet_classes: tuple[int, ...] = ()
    note: str = ""

    @property
    def has_builtin(self) -> bool:
        return bool(self.imagenet_classes)


@dataclass(frozen=True)
class Group:
    name: str
    title: str
    children: tuple[str, ...] = field(default_factory=tuple)


# name, title, ImageNet classes (index: name), note on what the built-in sees.
_TREE: list[tuple[str, str, list[tuple[str, str, tuple[int, ...], str]]]] = [
    ("explicit_nudity", "Explicit Nudity", [
        ("nudity", "Nudity", (), ""),
        ("graphic_male_nudity", "Graphic Male Nudity", (), ""),
        ("graphic_female_nudity", "Graphic Female Nudity", (), ""),
        ("sexual_activity", "Sexual Activity", (), ""),
        ("partial_nudity", "Partial Nudity", (), ""),
    ]),
    ("suggestive", "Suggestive", [
        ("female_underwear", "Female Swimwear or Underwear", (459,), "ImageNet: brassiere"),
        ("male_underwear", "Male Swimwear or Underwear", (), ""),
        ("revealing_clothes", "Revealing Clothes", (655,), "ImageNet: miniskirt"),
        ("swimwear", "Swimwear", (445, 638, 639, 842), "ImageNet: bikini, maillot (x2), swimming trunks"),
    ]),
    ("violence", "Violence", [
        ("weapons", "Weapons", (413, 763, 764, 597, 471, 657, 744),
         "ImageNet: assault rifle, revolver, rifle, holster, cannon, missile, projectile"),
        ("graphic_violence", "Graphic Violence or Gore", (), ""),
        ("fight", "Physical Violence", (), ""),
    ]),
    ("drugs", "Drugs", [
        ("syringe", "Syringe", (845,), "ImageNet: syringe"),
        ("pills", "Pills", (720,), "ImageNet: pill bottle"),
        ("drug_paraphernalia", "Drug Paraphernalia", (), ""),
    ]),
    ("alcohol", "Alcohol", [
        ("alcohol", "Alcohol", (440, 441, 907, 966, 901, 503),
         "ImageNet: beer bottle, beer glass, wine bottle, red wine, whiskey jug, cocktail shaker"),
    ]),
    ("tobacco", "Tobacco", [
        ("tobacco", "Tobacco", (860,), "ImageNet: tobacco shop (ImageNet has no cigarette class)"),
    ]),
    ("gambling", "Gambling", [("gambling", "Gambling", (800,), "ImageNet: slot machine")]),
    ("hate_symbols", "Hate Symbols", [("hate_symbols", "Hate Symbols", (), "")]),
    ("rude_gestures", "Rude Gestures", [("rude_gestures", "Rude Gestures", (), "")]),
]


def _build():
    groups: dict[str, Group] = {}
    cats: dict[str, Category] = {}
    for gname, gtitle, children in _TREE:
        standalone = len(children) == 1 and children[0][0] == gname
        if standalone:
            name, title, classes, note = children[0]
            cats[name] = Category(name, title, None, classes, note)
            groups[gname] = Group(gname, gtitle, ())
            continue
        cats[gname] = Category(gname, gtitle, None, (), "max of its children unless labelled itself")
        for name, title, classes, note in children:
            cats[name] = Category(name, title, gname, classes, note)
        groups[gname] = Group(gname, gtitle, tuple(c[0] for c in children))
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
        raise ValueError(
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
def builtin_weights(classes) -> "np.ndarray":
    import numpy as np

    w = np.zeros(1000, dtype=np.float32)
    w[list(classes)] = 1.0
    return w


def _parent_classes(name: str) -> tuple[int, ...]:
    return tuple(sorted({i for c in children(name) for i in CATEGORIES[c].imagenet_classes}))


def ensure_concepts(wh, materialize: bool = True) -> list[str]:
    """Create, through the concept registry, every category with a built-in definition that is
    not a concept yet; return the names created.

    A parent with built-in children gets the union of their ImageNet classes as
    its own head: under a softmax those classes are exclusive, so the sum is the
    probability of "any of them", never below any child's.  A concept the user
    already made under a category's name is left alone: it *is* the category.
    Needs the default encoder to be registered (after the first ingest).
    """
    from . import registry
    from .heads import ConceptError, HeadSpec

    con = wh.cursor()
    if BUILTIN_ENCODER not in {r[0] for r in con.execute("SELECT name FROM catalog.encoders").fetchall()}:
        return []
    made = []
    order = [n for n in CATEGORIES if parent(n) is None] + [n for n in CATEGORIES if parent(n) is not None]
    for name in order:
        cat = CATEGORIES[name]
        classes = cat.imagenet_classes or _parent_classes(name)
        if not classes or registry.exists(wh, name):
            continue
        head = HeadSpec("model", BUILTIN_ENCODER, "probs", builtin_weights(classes), 1.0, 0.0, "linear",
                        {"source": "pixql moderation taxonomy", "imagenet_classes": list(classes)})
        par = cat.parent if cat.parent and registry.exists(wh, cat.parent) else None
        try:
            registry.create_from_head(wh, name, head, description=f"{cat.title} ({cat.note})" if cat.note else cat.title,
                                      threshold=0.5, parent=par, materialize=materialize)
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
    out = []
    for name, cat in CATEGORIES.items():
        r = rows.get(name)
        if r and r[0]:
            state = f"concept v{r[0]} ({r[1]} head on {r[2]})"
        elif children(name) and any(rows.get(c) for c in children(name)):
            state = "max of its children"
        else:
            state = "empty: no head until labelled (feedback with this category adds labels)"
        out.append({"category": name, "title": cat.title, "parent": cat.parent, "children": list(children(name)),
                    "builtin": cat.note or None, "concept_version": r[0] if r else None, "state": state,
                    "scored": bool(r and r[0]) or any(rows.get(c) for c in children(name))})
    return out
