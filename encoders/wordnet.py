"""WordNet 3.0 (Debian's `wordnet-base`) for ImageNet classes: hypernym chains and glosses.

ImageNet's classes are WordNet noun synsets (wnid `n04086273` is the synset at byte offset
04086273 of `data.noun`).  ConSE (`encoders/conse.py`) may read a class as its own names plus its
hypernyms' names ("red wine" is a wine, an alcoholic beverage): a prompt that names the family
("alcohol", "a weapon") then finds every member, which the class names alone do not say.

Optional at run time: without the database (`available()` is False) ConSE uses the class names
only, as before.  The files are looked for in $WNHOME/dict, /usr/share/wordnet (Debian) and
/usr/share/wordnet/dict.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

_PLACES = ("/usr/share/wordnet", "/usr/share/wordnet/dict")


def data_file() -> Path | None:
    places = ([os.path.join(os.environ["WNHOME"], "dict")] if os.environ.get("WNHOME") else []) + list(_PLACES)
    for d in places:
        p = Path(d) / "data.noun"
        if p.is_file():
            return p
    return None


def available() -> bool:
    return data_file() is not None


@functools.lru_cache(maxsize=1)
def _nouns() -> dict[int, tuple[list[str], list[int], str]]:
    """{offset: (lemmas, hypernym offsets, gloss)} for every noun synset."""
    return _parse()[0]


@functools.lru_cache(maxsize=1)
def _parse():
    path = data_file()
    out: dict[int, tuple[list[str], list[int], str]] = {}
    down: dict[int, list[int]] = {}
    if path is None:
        return out, down
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):  # the licence header
                continue
            head, _, gloss = line.partition(" | ")
            f = head.split()
            n_words = int(f[3], 16)
            words = [f[4 + 2 * k].replace("_", " ") for k in range(n_words)]
            k = 4 + 2 * n_words
            n_ptr = int(f[k])
            hyper = [int(f[k + 1 + 4 * j + 1]) for j in range(n_ptr) if f[k + 1 + 4 * j] in ("@", "@i")]
            down[int(f[0])] = [int(f[k + 1 + 4 * j + 1]) for j in range(n_ptr) if f[k + 1 + 4 * j] in ("~", "~i")]
            out[int(f[0])] = (words, hyper, gloss.strip())
    return out, down


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, list[int]]:
    """{lemma: its tagged (corpus-attested) noun senses, most frequent first}."""
    path = data_file()
    out: dict[str, list[int]] = {}
    if path is None:
        return out
    with open(path.with_name("index.noun"), encoding="utf-8", errors="replace") as fh:
        for line in fh:
            if line.startswith("  "):
                continue
            f = line.split()
            n_syn, n_ptr = int(f[2]), int(f[3])
            tagged = int(f[5 + n_ptr])
            offsets = [int(x) for x in f[-n_syn:]]
            out[f[0]] = offsets[:max(tagged, 1)]
    return out


def senses(phrase: str) -> list[int]:
    """The phrase's tagged noun senses ("a gun" -> gun, artillery); a phrase WordNet does not know
    as a whole is tried by its parts ("beer or wine" -> beer, wine)."""
    import re

    def look(text):
        words = text.strip().lower().split()
        while words and words[0] in ("a", "an", "the", "some"):
            words = words[1:]
        return _index().get("_".join(words), []) if words else []

    found = look(phrase)
    if not found:
        for part in re.split(r",|/|\bor\b|\band\b", phrase):
            found += [o for o in look(part) if o not in found]
    return found


def ancestors(wnid: str) -> set[int]:
    """The synset and every synset above it (all hypernym paths)."""
    nouns = _nouns()
    s = synset(wnid)
    if s is None:
        return set()
    seen, todo = {int(wnid[1:])}, list(s[1])
    while todo:
        off = todo.pop()
        if off not in seen and off in nouns:
            seen.add(off)
            todo += nouns[off][1]
    return seen


def synset(wnid: str) -> tuple[list[str], list[int], str] | None:
    if not wnid or wnid[0] != "n" or not wnid[1:].isdigit():
        return None
    return _nouns().get(int(wnid[1:]))


def hypernyms(wnid: str, depth: int) -> list[list[str]]:
    """The lemmas of the synset's hypernyms, level by level up to `depth` levels (nearest first)."""
    nouns = _nouns()
    s = synset(wnid)
    if s is None:
        return []
    levels, seen, frontier = [], set(), list(s[1])
    for _ in range(depth):
        names = []
        nxt = []
        for off in frontier:
            if off in seen or off not in nouns:
                continue
            seen.add(off)
            words, up, _ = nouns[off]
            names += words
            nxt += up
        if not names:
            break
        levels.append(names)
        frontier = nxt
    return levels


def gloss(wnid: str) -> str | None:
    s = synset(wnid)
    return s[2] if s else None
