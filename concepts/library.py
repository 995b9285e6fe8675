"""The built-in starter library of moderation concepts (`pixql concepts install-defaults`).

On `imagenet-lite0` (the default encoder) a text concept can only be as good
as the ImageNet classes it maps onto, so each entry's prompts are ImageNet
class names chosen by hand; `MAPS_TO` documents the classes (ConSE weights
near 1).  Entries marked *proxy* have no ImageNet class of their own and fire
on related objects only: label examples (`pixql concept label`) or use a CLIP
encoder for them.  On `clip:*` encoders the `clip` prompts (plain English) are
used with the CLIP text tower instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    name: str
    description: str
    prompts: tuple[str, ...]
    clip: tuple[str, ...]
    negatives: tuple[str, ...] = field(default_factory=tuple)
    threshold: float = 0.5


DEFAULTS: tuple[Entry, ...] = (
    Entry("handgun", "Handguns (pistols, revolvers).", ("revolver", "holster"), ("a handgun", "a pistol")),
    Entry("rifle", "Rifles and long guns.", ("rifle", "assault rifle"), ("a rifle", "a shotgun")),
    Entry("knife", "Knives and blades.", ("cleaver", "letter opener"), ("a knife", "a dagger")),
    Entry("syringe", "Syringes and needles.", ("syringe",), ("a syringe", "a hypodermic needle")),
    Entry("pills", "Pills and pill bottles.", ("pill bottle",), ("pills", "a bottle of pills")),
    Entry("alcohol", "Alcoholic drinks and their bottles and glasses.",
          ("beer bottle", "wine bottle", "red wine", "beer glass", "whiskey jug", "cocktail shaker"),
          ("a bottle of beer", "a glass of wine", "a bottle of liquor")),
    Entry("cigarette", "Smoking and tobacco (proxy on imagenet-lite0: tobacco shop, lighter).",
          ("tobacco shop", "lighter"), ("a person smoking a cigarette", "a cigarette")),
    Entry("swimwear", "Swimsuits and bikinis.", ("bikini", "maillot", "swimming trunks"),
          ("a person in a swimsuit", "a bikini")),
    Entry("underwear", "Underwear and lingerie (imagenet-lite0: brassiere).", ("brassiere",),
          ("a person in underwear", "lingerie")),
    Entry("fight", "People fighting (proxy on imagenet-lite0: punching bag).", ("punching bag",),
          ("people fighting", "a fist fight")),
    Entry("blood", "Blood and injuries (proxy on imagenet-lite0: Band Aid, stretcher).", ("Band Aid", "stretcher"),
          ("blood", "a bleeding wound")),
)

MAPS_TO = {
    "handgun": ["revolver, six-gun, six-shooter", "holster"],
    "rifle": ["rifle", "assault rifle, assault gun"],
    "knife": ["cleaver, meat cleaver, chopper", "letter opener, paper knife, paperknife"],
    "syringe": ["syringe"],
    "pills": ["pill bottle"],
    "alcohol": ["beer bottle", "wine bottle", "red wine", "beer glass", "whiskey jug", "cocktail shaker"],
    "cigarette": ["tobacco shop, tobacconist shop, tobacconist", "lighter, light, igniter, ignitor"],
    "swimwear": ["bikini, two-piece", "maillot", "maillot, tank suit", "swimming trunks, bathing trunks"],
    "underwear": ["brassiere, bra, bandeau"],
    "fight": ["punching bag, punch bag, punching ball, punchball"],
    "blood": ["Band Aid", "stretcher"],
}


def install_defaults(wh, encoder: str | None = None, names=None, created_by: str = "library") -> list[str]:
    """Create the library's concepts that do not exist yet; score them in one pass. Returns the created names."""
    from .registry import create, default_encoder, exists, materialize

    encoder = encoder or default_encoder(wh)
    wanted = set(names) if names else None
    created = []
    for e in DEFAULTS:
        if (wanted and e.name not in wanted) or exists(wh, e.name):
            continue
        prompts = e.prompts if encoder == "imagenet-lite0" else e.clip
        create(wh, e.name, prompts=list(prompts), negative_prompts=list(e.negatives), description=e.description,
               threshold=e.threshold, encoder=encoder, created_by=created_by, materialize=False)
        created.append(e.name)
    if created:
        materialize(wh, created)
    return created
