"""The one catalogue of built-in concepts: the starter library and the moderation categories.

Each `Entry` is data: its name (the concept and column name), a title and a
description, its parent category, the ImageNet classes that *are* the thing (exact
ImageNet descriptions), plain-English prompts for encoders with a text tower,
and two flags: `library` (created by `pixql concepts install-defaults`) and
`category` (a node of the moderation taxonomy, `concepts/taxonomy.py`).

How an entry becomes a head on an encoder is the encoder's one rule,
`Encoder.builtin_head` (`head_for` below): on ImageNet encoders the sum of the
named classes' probabilities (a linear head over `probs`), on CLIP encoders the
text tower on `prompts`.  So whichever of the library or the moderation
service creates `syringe` first, it is the same column.

`proxy` entries have no ImageNet class of their own and fire on related
objects only (a punching bag for `fight`): the starter library installs them,
but as a moderation category a proxy scores nothing until labelled, rather
than pretending a punching bag is a fight.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

from .heads import ConceptError, HeadSpec, class_names, encoder_of


@dataclass(frozen=True)
class Entry:
    name: str
    title: str
    description: str
    parent: str | None = None
    imagenet: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    negatives: tuple[str, ...] = field(default_factory=tuple)
    proxy: bool = False
    library: bool = False
    category: bool = False
    threshold: float | None = None  # None: the default rule (concepts/calibrate.py)
    note: str = ""  # what the built-in definition sees, for the moderation report


def _e(name, description, imagenet=(), prompts=(), negatives=(), proxy=False, title=None, note=""):
    return Entry(name, title or name.replace("_", " ").title(), description, None, tuple(imagenet), tuple(prompts),
                 tuple(negatives), proxy, note=note)


def _cat(name, title, imagenet=(), note=""):
    return _e(name, f"{title} ({note})" if note else title, imagenet, title=title, note=note)


_ENTRIES = (
    # -- the starter library, in install order
    _e("handgun", "Handguns (pistols, revolvers).", ("revolver, six-gun, six-shooter", "holster"),
       ("a handgun", "a pistol")),
    _e("rifle", "Rifles and long guns.", ("rifle", "assault rifle, assault gun"), ("a rifle", "a shotgun")),
    _e("knife", "Knives and blades.", ("cleaver, meat cleaver, chopper", "letter opener, paper knife, paperknife"),
       ("a knife", "a dagger")),
    _e("syringe", "Syringes and needles.", ("syringe",), ("a syringe", "a hypodermic needle"), title="Syringe",
       note="ImageNet: syringe"),
    _e("pills", "Pills and pill bottles.", ("pill bottle",), ("pills", "a bottle of pills"), title="Pills",
       note="ImageNet: pill bottle"),
    _e("alcohol", "Alcoholic drinks and their bottles and glasses.",
       ("beer bottle", "beer glass", "wine bottle", "red wine", "whiskey jug", "cocktail shaker"),
       ("a bottle of beer", "a glass of wine", "a bottle of liquor"), title="Alcohol",
       note="ImageNet: beer bottle, beer glass, wine bottle, red wine, whiskey jug, cocktail shaker"),
    _e("cigarette", "Smoking and tobacco (proxy on ImageNet encoders: tobacco shop, lighter).",
       ("tobacco shop, tobacconist shop, tobacconist", "lighter, light, igniter, ignitor"),
       ("a person smoking a cigarette", "a cigarette"), proxy=True),
    _e("swimwear", "Swimsuits and bikinis.",
       ("bikini, two-piece", "maillot", "maillot, tank suit", "swimming trunks, bathing trunks"),
       ("a person in a swimsuit", "a bikini"), title="Swimwear",
       note="ImageNet: bikini, maillot (x2), swimming trunks"),
    _e("underwear", "Underwear and lingerie (ImageNet encoders: brassiere).", ("brassiere, bra, bandeau",),
       ("a person in underwear", "lingerie")),
    _e("fight", "People fighting (proxy on ImageNet encoders: punching bag).",
       ("punching bag, punch bag, punching ball, punchball",), ("people fighting", "a fist fight"),
       proxy=True, title="Physical Violence"),
    _e("blood", "Blood and injuries (proxy on ImageNet encoders: Band Aid, stretcher).", ("Band Aid", "stretcher"),
       ("blood", "a bleeding wound"), proxy=True),
    # -- moderation categories that are not in the starter library
    _cat("nudity", "Nudity"),
    _cat("graphic_male_nudity", "Graphic Male Nudity"),
    _cat("graphic_female_nudity", "Graphic Female Nudity"),
    _cat("sexual_activity", "Sexual Activity"),
    _cat("partial_nudity", "Partial Nudity"),
    _cat("female_underwear", "Female Swimwear or Underwear", ("brassiere, bra, bandeau",), "ImageNet: brassiere"),
    _cat("male_underwear", "Male Swimwear or Underwear"),
    _cat("revealing_clothes", "Revealing Clothes", ("miniskirt, mini",), "ImageNet: miniskirt"),
    _cat("weapons", "Weapons",
         ("assault rifle, assault gun", "revolver, six-gun, six-shooter", "rifle", "holster", "cannon", "missile",
          "projectile, missile"),
         "ImageNet: assault rifle, revolver, rifle, holster, cannon, missile, projectile"),
    _cat("graphic_violence", "Graphic Violence or Gore"),
    _cat("drug_paraphernalia", "Drug Paraphernalia"),
    _cat("tobacco", "Tobacco", ("tobacco shop, tobacconist shop, tobacconist",),
         "ImageNet: tobacco shop (ImageNet has no cigarette class)"),
    _cat("gambling", "Gambling", ("slot, one-armed bandit",), "ImageNet: slot machine"),
    _cat("hate_symbols", "Hate Symbols"),
    _cat("rude_gestures", "Rude Gestures"),
)

LIBRARY_NAMES = ("handgun", "rifle", "knife", "syringe", "pills", "alcohol", "cigarette", "swimwear", "underwear",
                 "fight", "blood")

# The moderation taxonomy, in order: (top-level name, title, children).  A top level
# whose only child has its own name stands alone; any other top level is a group
# whose probability is the max of its children's unless labelled itself.
TREE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("explicit_nudity", "Explicit Nudity",
     ("nudity", "graphic_male_nudity", "graphic_female_nudity", "sexual_activity", "partial_nudity")),
    ("suggestive", "Suggestive", ("female_underwear", "male_underwear", "revealing_clothes", "swimwear")),
    ("violence", "Violence", ("weapons", "graphic_violence", "fight")),
    ("drugs", "Drugs", ("syringe", "pills", "drug_paraphernalia")),
    ("alcohol", "Alcohol", ("alcohol",)),
    ("tobacco", "Tobacco", ("tobacco",)),
    ("gambling", "Gambling", ("gambling",)),
    ("hate_symbols", "Hate Symbols", ("hate_symbols",)),
    ("rude_gestures", "Rude Gestures", ("rude_gestures",)),
)
GROUP_NOTE = "max of its children unless labelled itself"


def _build() -> dict[str, Entry]:
    given = {e.name: e for e in _ENTRIES}
    out: dict[str, Entry] = {}
    for top, title, children in TREE:
        if children != (top,):
            out[top] = replace(_cat(top, title, note=GROUP_NOTE), category=True)
        for c in children:
            out[c] = replace(given[c], parent=None if c == top else top, category=True)
    for name in LIBRARY_NAMES:
        out[name] = replace(out.get(name, given[name]), library=True)
    missing = set(given) - set(out)
    if missing:
        raise RuntimeError(f"catalogue entries in neither the library nor the taxonomy: {sorted(missing)}")
    return out


BY_NAME: dict[str, Entry] = _build()
LIBRARY: tuple[Entry, ...] = tuple(BY_NAME[n] for n in LIBRARY_NAMES)
CATEGORIES: tuple[Entry, ...] = tuple(e for e in BY_NAME.values() if e.category)  # in taxonomy order


def members(name: str) -> tuple[Entry, ...]:
    return tuple(e for e in CATEGORIES if e.parent == name)


def moderation_definition(entry: Entry) -> Entry | None:
    """The entry as the moderation taxonomy defines it: proxies have no built-in, and a group
    with built-in children gets the union of their ImageNet classes (under a softmax those
    classes are exclusive, so the sum is P(any of them), never below any child's)."""
    if entry.proxy:
        return None
    if entry.imagenet or entry.prompts:
        return entry
    classes: list[str] = []
    for child in members(entry.name):
        if not child.proxy:
            classes += [c for c in child.imagenet if c not in classes]
    return replace(entry, imagenet=tuple(classes)) if classes else None


def head_for(entry: Entry, encoder: str, class_names: list[str] | None = None):
    """(HeadSpec of kind 'model' or 'text', prompts, negatives) of `entry` on `encoder`, or None
    when the encoder has no definition for it."""
    enc = encoder_of(encoder)
    if enc is None:
        raise ConceptError(f"unknown encoder {encoder!r}")
    try:
        made = enc.builtin_head(entry, class_names)
    except ValueError as e:
        raise ConceptError(f"built-in concept {entry.name!r} on {encoder}: {e}") from e
    if made is None:
        return None
    h, prompts, negatives = made
    kind = "text" if prompts else "model"
    return HeadSpec(kind, encoder, **h), prompts, negatives


def create(wh, entry: Entry, encoder: str, parent: str | None = None, materialize: bool = True) -> bool:
    """Create `entry` as a concept on `encoder` through the registry; False if the encoder has
    no definition for it."""
    from . import registry

    made = head_for(entry, encoder, class_names(wh.cursor(), encoder))
    if made is None:
        return False
    head, prompts, negatives = made
    registry.create_from_head(wh, entry.name, head, description=entry.description, threshold=entry.threshold,
                              parent=parent, materialize=materialize, prompts=prompts, negative_prompts=negatives)
    return True
