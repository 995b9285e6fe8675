"""Measured quality of the built-in concepts and moderation categories, shipped as data.

`library_quality.json` (next to this module) is written by `benchmarks/library_quality.py` from a
`benchmarks/quality.py` run on the named dev set (`debian-emoji-sprites-v1`: Debian emoji and game
sprites, see the README "Concept quality").  Per built-in: the held-out AUROC, the TPR and FPR of
`<c> = 1` at its default threshold, the best TPR at FPR <= 2%, the number of held-out positives,
and a `status`:

* `works`: AUROC >= 0.85 with at least `MIN_POSITIVES` held-out positives;
* `weak`: AUROC 0.65-0.85;
* `chance`: AUROC below 0.65 (it ranks no better than a coin on that set), on 3 or more positives;
* `unmeasurable`: otherwise fewer than `MIN_POSITIVES` held-out positives (or none);
* `unscored`: no built-in definition at all (empty until labelled).

The figures describe the built-in definition on the measured encoder, on drawings and sprites,
not photos; a concept retrained on labels is no longer that definition (`of` then returns None).
Anything but `works` carries the advice to label examples.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

DATA = Path(__file__).with_name("library_quality.json")
MIN_POSITIVES = 5
ADVICE = "label examples (`pixql concept label`, or moderation feedback with the category) before relying on it"
GOOD = "works"


@functools.lru_cache(maxsize=1)
def load() -> dict:
    try:
        return json.loads(DATA.read_text())
    except (OSError, ValueError):
        return {"concepts": {}, "categories": {}}


def status(auroc: float | None, n_pos: int) -> str:
    if auroc is not None and auroc < 0.65 and n_pos >= 3:
        return "chance"  # even on few positives: it ranks them among the negatives
    if auroc is None or n_pos < MIN_POSITIVES:
        return "unmeasurable"
    if auroc < 0.65:
        return "chance"
    return "weak" if auroc < 0.85 else GOOD


def _with_source(entry: dict | None) -> dict | None:
    if entry is None:
        return None
    d = load()
    out = {**entry, "devset": d.get("devset"), "encoder": d.get("encoder")}
    if out.get("status") != GOOD:
        out["advice"] = ADVICE
    return out


def of(name: str, encoder: str | None = None, labelled: bool = False) -> dict | None:
    """The measured quality of the built-in `name` (a library concept, else a category), or None
    when it is not a built-in, runs on another encoder, or was retrained on labels."""
    d = load()
    if labelled or (encoder and d.get("encoder") and encoder.partition(":")[0] != d["encoder"]):
        return None
    return _with_source(d.get("concepts", {}).get(name) or d.get("categories", {}).get(name))


def category(name: str) -> dict | None:
    return _with_source(load().get("categories", {}).get(name))


def unreliable_categories() -> list[str]:
    """Moderation categories whose built-in does not measurably work (chance, unmeasurable)."""
    return [n for n, e in load().get("categories", {}).items() if e.get("status") in ("chance", "unmeasurable")]


def line(name: str) -> str | None:
    """One line for the CLI: the figures and the verdict."""
    q = of(name)
    if q is None:
        return None
    if q.get("auroc") is None:
        return (f"quality: {q['status']} on {q['devset']} ({q.get('n_pos', 0)} held-out positives"
                f"{'; ' + q['note'] if q.get('note') else ''}): {ADVICE}")
    text = (f"quality on {q['devset']} ({q['encoder']}, {q['n_pos']} held-out positives): AUROC {q['auroc']:.3f}, "
            f"TPR {q['tpr']:.2f} at FPR {q['fpr']:.3f} at its threshold; {q['status']}")
    return text + ("" if q["status"] == GOOD else f": {ADVICE}")
