"""The labelled dev set of `benchmarks/quality.py`, built from images that ship in Debian packages.

    apt-get install -y fonts-noto-color-emoji ruby-gemojione libjs-emojify cataclysm-dda-data
    python benchmarks/devset.py [--cache DIR]          # build (or reuse) and print the composition

Sources (each optional: a package that is not installed is skipped and named):
  * `ruby-gemojione`    Emoji One PNGs (64 px), labelled from index.json's name, shortname, aliases;
  * `libjs-emojify`     emojify.js PNGs, labelled from the file's shortcode (`gun.png`, `hocho.png`);
  * `fonts-noto-color-emoji`  glyphs rendered with Pillow at 109 px (the CBDT strike), labelled
                        from gemojione's names for the same code points, else Python's unicodedata;
  * `cataclysm-dda-data`  item sprites cut from two tilesets, labelled from the item JSON
                        (gun type and skill, the file an item is defined in, curated id lists);
  * the bundled photos (`api.cli.demo.write_demo_images`), negatives for everything.

Every image carries `positives` (labels it is) and `ambiguous` (labels it is excluded from, e.g.
"fork and knife" for knife, "no smoking" for tobacco); every other label is a negative.  The
split is by `group` (an emoji's code points across the three emoji sets, a sprite's item id
across tilesets) so a drawing of the same thing never sits in train and test.  All positives
are kept; negatives are sampled per source with a fixed seed to bound the ingest.

The set is written once to --cache / $PIXQL_DEVSET_CACHE (default /tmp/pixql-devset) under its
name; a re-run with the same name reuses it.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import unicodedata
from dataclasses import asdict, dataclass, field
from pathlib import Path

NAME = "debian-emoji-sprites-v1"
DEFAULT_CACHE = Path(os.environ.get("PIXQL_DEVSET_CACHE", "/tmp/pixql-devset"))

LABELS = ("gun", "handgun", "rifle", "knife", "weapon", "alcohol", "tobacco", "syringe", "pills", "drugs",
          "swimwear", "underwear", "swim_or_underwear", "blood", "fight", "gambling")
# A positive of the key is a positive of every label in the value (applied to a fixed point).
IMPLIES = {"handgun": {"gun"}, "rifle": {"gun"}, "gun": {"weapon"}, "knife": {"weapon"},
           "syringe": {"drugs"}, "pills": {"drugs"}, "swimwear": {"swim_or_underwear"},
           "underwear": {"swim_or_underwear"}}

GEMOJIONE = Path("/usr/share/rubygems-integration/all/gems/gemojione-3.3.0")
EMOJIFY = Path("/usr/share/javascript/emojify.js/images/emoji")
NOTO = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
DDA = Path("/usr/share/games/cataclysm-dda")
DDA_TILESETS = ("UltimateCataclysm", "MshockXotto+")  # 32 px, two artists (ChibiUltica reuses the first)
PACKAGES = {"gemojione": "ruby-gemojione", "emojify": "libjs-emojify", "noto": "fonts-noto-color-emoji",
            "dda": "cataclysm-dda-data"}
# Negatives kept per source (positives are all kept): about 3,700 images in all.
NEGATIVE_CAP = {"gemojione": 900, "emojify": 450, "noto": 650, "dda": 1200}

# -- labelling from names ------------------------------------------------------------------------
# Whole-word phrases in an emoji's name / shortname / aliases.  Ambiguous phrases are checked
# first: they exclude the image from that label's evaluation instead of making it a positive.
EMOJI_AMBIGUOUS = [
    ("fork and knife", "knife"), ("no smoking", "tobacco"), ("axe", "weapon"), ("boomerang", "weapon"),
    ("hammer", "weapon"), ("shield", "weapon"), ("baby bottle", "alcohol"), ("cup with straw", "alcohol"),
    ("oncoming fist", "fight"), ("punch", "fight"), ("fist", "fight"),
    ("bathing", "swimwear"), ("swimmer", "swimwear"), ("shorts", "underwear"),
]
EMOJI_RULES = [
    (("pistol", "gun", "revolver", "water pistol"), "handgun"),
    (("rifle", "shotgun"), "rifle"),
    (("knife", "hocho", "dagger", "sword", "swords", "crossed swords"), "knife"),
    (("bomb", "grenade", "bow and arrow", "bow_and_arrow"), "weapon"),
    (("beer", "beers", "wine", "wine glass", "cocktail", "sake", "champagne", "tumbler", "whisky", "whiskey",
      "tropical drink", "clinking glasses", "popping cork"), "alcohol"),
    (("cigarette", "smoking", "cigar"), "tobacco"),
    (("syringe",), "syringe"),
    (("pill", "pills"), "pills"),
    (("bikini", "swimsuit", "one piece swimsuit", "briefs"), "swimwear"),
    (("briefs", "bra", "underwear"), "underwear"),
    (("drop of blood",), "blood"),
    (("boxing glove", "wrestlers", "wrestling", "fencer", "person fencing"), "fight"),
    (("slot machine", "game die", "joker", "black joker"), "gambling"),
]


def _words(text: str) -> str:
    return " " + " ".join(re.sub(r"[^a-z0-9]+", " ", text.lower()).split()) + " "


def closure(pos: set[str]) -> set[str]:
    out, todo = set(pos), list(pos)
    while todo:
        for q in IMPLIES.get(todo.pop(), ()):
            if q not in out:
                out.add(q)
                todo.append(q)
    return out


def label_emoji(*names: str) -> tuple[set[str], set[str]]:
    """(positives, ambiguous) for an emoji known by these names (name, shortname, aliases, file stem)."""
    text = " ".join(_words(n) for n in names if n)
    ambiguous = {lab for phrase, lab in EMOJI_AMBIGUOUS if f" {phrase} " in text}
    pos = {lab for phrases, lab in EMOJI_RULES if any(f" {p} " in text for p in phrases)} - ambiguous
    if "fork and knife" in text:  # cutlery: its knife makes it no clean negative for weapon either
        ambiguous.add("weapon")
    pos = closure(pos)
    return pos, ambiguous - pos


# Cataclysm: curated id lists where the JSON's types do not say it.
DDA_PILLS = {"melatonin_tablet", "adderall", "antibiotics", "antifungal", "antiparasitic", "aspirin", "caffeine",
             "codeine", "diazepam", "iodine", "oxycodone", "pills_sleep", "prozac", "prussian_blue", "thorazine",
             "tramadol", "vitamins", "calcium_tablet", "bonemeal_tablet", "flavored_bonemeal_tablet",
             "homeopathic_pills", "xanax", "weak_antibiotic", "strong_antibiotic"}
DDA_SYRINGE = {"syringe", "adrenaline_injector", "rx12_injector", "flu_shot", "vaccine_shot", "inj_vitb", "inj_iron"}
DDA_DRUGS = {"coke", "crack", "meth", "heroin", "morphine", "weed", "joint", "lsd", "cocaine_topical", "cola_meth"}
DDA_TOBACCO = {"cig", "cigar", "handrolled_cig", "tobacco", "chaw", "ecig", "advanced_ecig", "pipe_tobacco"}
DDA_EXPLOSIVE_WEAPON = re.compile(r"grenade|bomb|dynamite|^c4|molotov|mininuke|fragmentation|demolition|flashbang")
DDA_UNDERWEAR = {"boxer_briefs", "xlboxer_briefs", "boxer_shorts", "xlboxer_shorts", "boy_shorts", "xlboy_shorts",
                 "bra", "briefs", "panties", "sports_bra", "xlsports_bra", "long_underpants", "undershirt", "corset"}
DDA_SWIMWEAR = {"bikini_top", "bikini_top_fur", "bikini_top_leather", "bikini_bottom", "trunks"}


def label_item(item_id: str, item_type: str | None, skill: str | None = None, source_file: str = "",
               category: str | None = None) -> tuple[set[str], set[str]]:
    """(positives, ambiguous) for a Cataclysm item from its JSON definition."""
    pos, amb = set(), set()
    f = source_file.replace("\\", "/")
    if item_type == "GUN":
        if skill == "pistol":
            pos.add("handgun")
        elif skill in ("rifle", "shotgun"):
            pos.add("rifle")
        elif skill == "smg":
            pos.add("gun")
        else:  # bows, crossbows, launchers, thrown: weapons that are not guns
            pos.add("weapon")
            amb.add("gun")
    elif item_type in ("GUNMOD", "MAGAZINE", "AMMO"):
        amb.add("weapon")  # parts of weapons: neither clean positives nor clean negatives
    if f.endswith(("melee/knives_kitchen.json", "melee/swords_and_blades.json")) and "cane" not in item_id:
        pos.add("knife")
    elif f.endswith("tool/knives.json") and "knife" in item_id:
        pos.add("knife")
    elif f.endswith(("melee/bludgeons.json", "melee/spears_and_polearms.json", "melee/misc.json")):
        amb.add("weapon")
    if f.endswith("tool/explosives.json"):
        (pos if DDA_EXPLOSIVE_WEAPON.search(item_id) else amb).add("weapon")
    if f.endswith("comestibles/alcohol.json"):
        pos.add("alcohol")
    elif f.endswith("comestibles/brewing.json"):
        amb.add("alcohol")
    if item_id in DDA_TOBACCO:
        pos.add("tobacco")
    if item_id in DDA_PILLS:
        pos.add("pills")
    if item_id in DDA_SYRINGE:
        pos.add("syringe")
    if item_id in DDA_DRUGS or category == "drugs":
        pos.add("drugs")
    if item_id in DDA_UNDERWEAR:
        pos.add("underwear")
    if item_id in DDA_SWIMWEAR:
        pos.add("swimwear")
    if f.endswith(("armor/undergarment.json", "armor/swimming.json")) and not pos & {"underwear", "swimwear"}:
        amb |= {"underwear", "swimwear", "swim_or_underwear"}
    if item_id == "blood":
        pos.add("blood")
    pos = closure(pos)
    return pos, amb - pos


# -- the set -------------------------------------------------------------------------------------
@dataclass
class Item:
    path: str                 # relative to the set's directory
    source: str
    group: str
    name: str
    positives: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    split: str = ""


def split_of(group: str, test_fraction: float = 0.5) -> str:
    h = int(hashlib.sha256(group.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_fraction else "train"


def _gemojione_index() -> dict:
    p = GEMOJIONE / "config" / "index.json"
    return json.loads(p.read_text()) if p.exists() else {}


def _emoji_names(e: dict) -> list[str]:
    return [e.get("name", ""), e.get("shortname", "").strip(":")] + [a.strip(":") for a in e.get("aliases", [])]


def _gemojione(out: Path, index: dict) -> list[tuple[Item, bytes]]:
    rows = []
    for key, e in index.items():
        if re.search(r"_tone\d$", key):  # skin-tone variants: the same drawing five more times
            continue
        png = GEMOJIONE / "assets" / "png" / f"{e['unicode'].upper()}.png"
        if png.exists():
            pos, amb = label_emoji(key, *_emoji_names(e))
            rows.append((Item("", "gemojione", "u:" + e["unicode"].lower(), key, sorted(pos), sorted(amb)),
                         png.read_bytes()))
    return rows


def _emojify(out: Path, index: dict) -> list[tuple[Item, bytes]]:
    if not EMOJIFY.is_dir():
        return []
    by_short = {}
    for key, e in index.items():
        for n in [key, e.get("shortname", "").strip(":")] + [a.strip(":") for a in e.get("aliases", [])]:
            by_short.setdefault(n, e)
    rows = []
    for png in sorted(EMOJIFY.glob("*.png")):
        e = by_short.get(png.stem)
        names = [png.stem] + (_emoji_names(e) if e else [])
        pos, amb = label_emoji(*names)
        group = "u:" + e["unicode"].lower() if e else "emojify:" + png.stem
        rows.append((Item("", "emojify", group, png.stem, sorted(pos), sorted(amb)), png.read_bytes()))
    return rows


def _noto(out: Path, index: dict) -> list[tuple[Item, bytes]]:
    if not NOTO.exists():
        return []
    import io

    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(NOTO), 109)  # CBDT: the only strike the font has

    def render(text: str) -> bytes | None:
        im = Image.new("RGBA", (136, 128), (0, 0, 0, 0))
        ImageDraw.Draw(im).text((0, 0), text, font=font, embedded_color=True)
        if im.getbbox() is None:
            return None
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    missing = render(chr(0x10FFFD))  # a private-use code point: the font's .notdef box, if any
    codes = {}
    for key, e in index.items():
        if "-" not in e["unicode"] and not re.search(r"_tone\d$", key):
            codes[int(e["unicode"], 16)] = (key, _emoji_names(e))
    for cp in list(range(0x1F300, 0x1F650)) + list(range(0x1F680, 0x1F700)) + list(range(0x1F900, 0x1FB00)):
        if cp not in codes:
            name = unicodedata.name(chr(cp), "")
            if name:
                codes[cp] = (name.lower().replace(" ", "_"), [name])
    rows = []
    for cp, (key, names) in sorted(codes.items()):
        data = render(chr(cp))
        if data is None or data == missing:
            continue
        pos, amb = label_emoji(*names, unicodedata.name(chr(cp), ""))
        rows.append((Item("", "noto", f"u:{cp:x}", key, sorted(pos), sorted(amb)), data))
    return rows


def _dda_items() -> dict[str, dict]:
    items = {}
    for f in sorted((DDA / "json" / "items").rglob("*.json")):
        try:
            data = json.loads(f.read_text())
        except (OSError, ValueError):
            continue
        for o in data if isinstance(data, list) else [data]:
            if isinstance(o, dict):
                key = o.get("id") or o.get("abstract")
                if isinstance(key, str):
                    items[key] = dict(o, _file=str(f.relative_to(DDA / "json")))
    return items


def _resolve(items: dict, key: str, attr: str):
    for _ in range(12):
        o = items.get(key)
        if o is None:
            return None
        if attr in o:
            return o[attr]
        key = o.get("copy-from")
    return None


def _sprites(tileset: Path):
    """Yield (tile id, PIL sprite) for each tile of a tileset with a foreground sprite."""
    from PIL import Image

    cfg = json.loads((tileset / "tile_config.json").read_text())
    info = cfg.get("tile_info", [{}])[0]
    offset = 0
    for sheet in cfg.get("tiles-new", []):
        sw, sh = sheet.get("sprite_width", info.get("width", 32)), sheet.get("sprite_height", info.get("height", 32))
        im = Image.open(tileset / sheet["file"]).convert("RGBA")
        cols, rows = im.width // sw, im.height // sh
        for t in sheet.get("tiles", []):
            fg = t.get("fg")
            while isinstance(fg, list) and fg:
                fg = fg[0]
            if isinstance(fg, dict):
                fg = fg.get("sprite")
            if not isinstance(fg, int) or not offset <= fg < offset + cols * rows:
                continue
            k = fg - offset
            sprite = im.crop(((k % cols) * sw, (k // cols) * sh, (k % cols + 1) * sw, (k // cols + 1) * sh))
            if sprite.getbbox() is None:
                continue
            for tid in t["id"] if isinstance(t["id"], list) else [t["id"]]:
                yield tid, sprite
        offset += cols * rows


def _dda(out: Path) -> list[tuple[Item, bytes]]:
    if not (DDA / "gfx").is_dir():
        return []
    import io

    items = _dda_items()
    rows = []
    for ts in DDA_TILESETS:
        if not (DDA / "gfx" / ts / "tile_config.json").exists():
            continue
        for tid, sprite in _sprites(DDA / "gfx" / ts):
            o = items.get(tid)
            if o is None or "id" not in o:
                continue
            pos, amb = label_item(tid, o.get("type"), _resolve(items, tid, "skill"), o["_file"],
                                  _resolve(items, tid, "category"))
            buf = io.BytesIO()
            sprite.save(buf, format="PNG")
            rows.append((Item("", "dda", "dda:" + tid, f"{ts}/{tid}", sorted(pos), sorted(amb)), buf.getvalue()))
    return rows


def _photos(tmp: Path) -> list[tuple[Item, bytes]]:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from api.cli.demo import write_demo_images

    return [(Item("", "photos", "photo:" + p.name, p.stem), p.read_bytes()) for p in write_demo_images(tmp)]


def _merge_duplicates(rows: list[tuple[Item, bytes]]) -> list[tuple[Item, bytes]]:
    """Identical images (a sprite shared by several ids) become one; labels they disagree on are ambiguous."""
    by_hash: dict[str, tuple[Item, bytes]] = {}
    for it, data in rows:
        h = hashlib.sha256(data).hexdigest()
        if h not in by_hash:
            by_hash[h] = (it, data)
            continue
        first = by_hash[h][0]
        a, b = set(first.positives), set(it.positives)
        first.ambiguous = sorted((set(first.ambiguous) | set(it.ambiguous) | (a ^ b)) - (a & b))
        first.positives = sorted(a & b)
    return list(by_hash.values())


def build(cache: Path = DEFAULT_CACHE, seed: int = 0) -> tuple[Path, list[Item]]:
    """Build (or reuse) the set; returns (its directory, items). Images are under dir/images/."""
    root = cache / NAME
    manifest = root / "labels.jsonl"
    if manifest.exists():
        return root, [Item(**json.loads(line)) for line in manifest.read_text().splitlines() if line]
    import shutil
    import tempfile

    index = _gemojione_index()
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".building-", dir=cache))
    try:
        sources = {"gemojione": _gemojione(work, index), "emojify": _emojify(work, index),
                   "noto": _noto(work, index), "dda": _dda(work)}
        missing = [PACKAGES[s] for s, r in sources.items() if not r]
        if missing:
            print(f"devset: not installed, skipped: {' '.join(missing)}", file=sys.stderr)
        rng = random.Random(seed)
        items: list[Item] = []
        for name, rows in sources.items():
            rows = _merge_duplicates(rows)
            pos = [r for r in rows if r[0].positives or r[0].ambiguous]
            neg = [r for r in rows if not (r[0].positives or r[0].ambiguous)]
            rng.shuffle(neg)
            for it, data in pos + neg[:NEGATIVE_CAP.get(name, len(neg))]:
                items.append(_write(work, it, data))
        for it, data in _photos(work / "_photos"):
            items.append(_write(work, it, data))
        shutil.rmtree(work / "_photos", ignore_errors=True)
        (work / "labels.jsonl").write_text("".join(json.dumps(asdict(it)) + "\n" for it in items))
        work.rename(root)  # atomic: a half-built set is never reused
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return root, items


def _write(work: Path, it: Item, data: bytes) -> Item:
    ext = ".jpg" if data[:3] == b"\xff\xd8\xff" else ".png"
    safe = re.sub(r"[^A-Za-z0-9_.+-]+", "_", it.name)[:80]
    rel = Path("images") / it.source / f"{safe}-{hashlib.sha256(data).hexdigest()[:8]}{ext}"
    (work / rel).parent.mkdir(parents=True, exist_ok=True)
    (work / rel).write_bytes(data)
    it.path, it.split = str(rel), split_of(it.group)
    return it


def is_positive(it: Item, label: str) -> bool | None:
    """True / False, or None when the item is excluded from this label's evaluation."""
    if label in it.positives:
        return True
    return None if label in it.ambiguous else False


def composition(items: list[Item]) -> list[dict]:
    rows = []
    for lab in LABELS:
        ys = [is_positive(it, lab) for it in items]
        tr = [is_positive(it, lab) for it in items if it.split == "train"]
        rows.append({"label": lab, "positives": sum(y is True for y in ys), "total": sum(y is not None for y in ys),
                     "train_positives": sum(y is True for y in tr), "excluded": sum(y is None for y in ys)})
    return rows


def print_composition(items: list[Item], file=sys.stdout) -> None:
    by_source = {}
    for it in items:
        by_source[it.source] = by_source.get(it.source, 0) + 1
    print(f"dev set {NAME}: {len(items)} images ({', '.join(f'{k} {v}' for k, v in by_source.items())}); "
          f"split by group: {sum(it.split == 'train' for it in items)} train / "
          f"{sum(it.split == 'test' for it in items)} test", file=file)
    print("| label | positives | total | train positives | excluded |", file=file)
    print("| --- | ---: | ---: | ---: | ---: |", file=file)
    for r in composition(items):
        print(f"| {r['label']} | {r['positives']} | {r['total']} | {r['train_positives']} | {r['excluded']} |", file=file)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="directory holding built sets")
    args = ap.parse_args()
    root, items = build(args.cache)
    print(f"at {root}")
    print_composition(items)


if __name__ == "__main__":
    main()
