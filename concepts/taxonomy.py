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
