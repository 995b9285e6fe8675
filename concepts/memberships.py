"""ConSE class memberships of a concept: which classifier classes count as the concept, and how much.

A text head on an ImageNet encoder is `sum_i P(class i) * m_i` over `probs` (`encoders/conse.py`
builds m from the prompts); a built-in's head is the same with m_i = 1 on its named classes.  The
memberships are therefore the concept's definition, and they are stored with every version:
`training.classes` lists each class with m_i >= `SHOWN` (`pixql concept show`, the API's version
`training`), and `training.class_edits` the user's pins (m_i = 1) and drops (m_i = 0) with the
membership ConSE had given the class.

An edit is a new version (`edit`); versions before it never change.  Edits belong to the concept,
not to one head: a later retrain (new prompts, new labels) rebuilds the ConSE memberships from
the prompts and applies the same edits again, and a labelled head with prompts takes its text
prior from the edited memberships.  `reset` undoes an edit.
"""
from __future__ import annotations

import numpy as np

from .heads import ConceptError, HeadSpec, class_names

SHOWN = 0.01


def names_for(con, encoder: str) -> list[str] | None:
    from .heads import encoder_of

    names = class_names(con, encoder)
    if names:
        return names
    enc = encoder_of(encoder)
    return list(getattr(enc, "class_names", None) or []) or None


def find_class(names: list[str], text: str) -> int:
    """The index of the class named `text`: its full ImageNet description or one of its synonyms."""
    t = (text or "").strip().lower()
    if not t:
        raise ConceptError("empty class name")
    exact = [i for i, n in enumerate(names) if n.lower() == t]
    if exact:
        return exact[0]
    syn = [i for i, n in enumerate(names) if t in (s.strip().lower() for s in n.split(","))]
    if len(syn) == 1:
        return syn[0]
    if len(syn) > 1:
        raise ConceptError(f"class {text!r} is ambiguous: {'; '.join(names[i] for i in syn)} (give the full name)")
    near = [n for n in names if t in n.lower()][:5]
    hint = f"; did you mean {' | '.join(near)}?" if near else ""
    raise ConceptError(f"no class named {text!r}{hint}")


def listing(weights, names: list[str], edits: dict | None = None) -> list[dict]:
    """The classes with membership >= SHOWN (and every edited one), largest first."""
    w = np.asarray(weights, np.float64)
    edits = edits or {}
    pinned, dropped = set(edits.get("pin", {})), set(edits.get("drop", {}))
    keep = [i for i in range(len(w)) if w[i] >= SHOWN or names[i] in pinned or names[i] in dropped]
    keep.sort(key=lambda i: -w[i])
    return [{"class": names[i], "index": i, "membership": round(float(w[i]), 4),
             "edit": "pinned" if names[i] in pinned else "dropped" if names[i] in dropped else None} for i in keep]


def apply(head: HeadSpec, names: list[str], edits: dict | None) -> HeadSpec:
    """`head` (a head over `probs`) with the pins and drops applied, its training listing the classes."""
    edits = {"pin": dict((edits or {}).get("pin", {})), "drop": dict((edits or {}).get("drop", {}))}
    w = np.asarray(head.weights, np.float32).copy()
    for k, target in (("pin", 1.0), ("drop", 0.0)):
        for cls in list(edits[k]):
            i = find_class(names, cls)
            if edits[k][cls] is None:  # what the map gave it before the edit, for `reset` and the record
                edits[k][cls] = round(float(w[i]), 4)
            w[i] = target
    head.weights = w
    training = dict(head.training)
    if edits["pin"] or edits["drop"]:
        training["class_edits"] = edits
    training["classes"] = listing(w, names, edits)
    head.training = training
    return head


def edits_of(training: dict | None) -> dict:
    e = (training or {}).get("class_edits") or {}
    return {"pin": dict(e.get("pin", {})), "drop": dict(e.get("drop", {}))}


def merge(current: dict, names: list[str], pin=(), drop=(), reset=()) -> dict:
    """The concept's edits after pinning, dropping or resetting the named classes (full names)."""
    out = {"pin": dict(current.get("pin", {})), "drop": dict(current.get("drop", {}))}
    for cls in reset:
        full = names[find_class(names, cls)]
        if full not in out["pin"] and full not in out["drop"]:
            raise ConceptError(f"class {full!r} is neither pinned nor dropped")
        out["pin"].pop(full, None)
        out["drop"].pop(full, None)
    for key, other, given in (("pin", "drop", pin), ("drop", "pin", drop)):
        for cls in given:
            full = names[find_class(names, cls)]
            out[other].pop(full, None)
            out[key].setdefault(full, None)
    both = set(pin) & set(drop)
    if both:
        raise ConceptError(f"class {sorted(both)[0]!r} given both to pin and to drop")
    return out


def edit(wh, name: str, pin=(), drop=(), reset=(), materialize: bool = True):
    """Pin (membership 1), drop (0) or reset classes of a concept's ConSE map: a new version."""
    from . import registry

    pin, drop, reset = [p for p in pin or () if p], [d for d in drop or () if d], [r for r in reset or () if r]
    if not (pin or drop or reset):
        raise ConceptError("give a class to pin, drop or reset")
    c = registry.get(wh, name)
    v = registry.version(wh, name, with_weights=True)
    con = wh.cursor()
    names = names_for(con, v.encoder)
    if not names:
        raise ConceptError(f"encoder {v.encoder!r} has no classes: class memberships are for ImageNet encoders")
    if v.vector_column != "probs" and not c.prompts:
        raise ConceptError(f"{name!r} is a {v.kind} head over {v.vector_column}, not a class map: "
                           "pin or drop classes of concepts with prompts or built-in classes")
    old = edits_of(v.training)
    edits = merge(old, names, pin, drop, reset)
    pos, neg = registry._current_split(wh, name)
    if c.prompts:  # rebuild from the prompts, so a reset restores what ConSE gives today
        fresh = {k: dict.fromkeys(e) for k, e in edits.items()}
        head = registry._build_head(wh, v.encoder, c.prompts, c.negative_prompts, pos, neg, class_edits=fresh)
    else:  # a built-in (kind 'model'): its own weights are the memberships
        head = registry._head_of(v)
        gone = {names[find_class(names, r)] for r in reset}
        for cls, was in {**old["pin"], **old["drop"]}.items():
            if cls in gone and was is not None:
                head.weights[find_class(names, cls)] = was
        head = apply(head, names, edits)
    if not (edits["pin"] or edits["drop"]):
        head.training.pop("class_edits", None)
    head.training = {**head.training, "derived_from": v.version, "change": "classes"}
    return registry._commit(wh, name, head, registry._kept_threshold(c), c.prompts, c.negative_prompts,
                            materialize=materialize)


def of(wh, name: str, version: int | None = None) -> list[dict]:
    """The class map of a version (newest by default): from its weights when the head reads
    `probs`, else the text prior's map stored with it; [] for heads without classes."""
    from . import registry

    v = registry.version(wh, name, version, with_weights=True)
    if v.vector_column == "probs":
        names = names_for(wh.cursor(), v.encoder)
        if names and len(names) == v.dim:
            return listing(v.weights, names, edits_of(v.training))
    return list(v.training.get("classes") or [])
