"""Verdicts: scores and look-alikes in, the model's `approved` | `review` | `rejected` out, with its reasons.

A score at or over the policy's threshold rejects; within the review band below
it sends to review.  A listed look-alike at or above the policy's `similarity`
decides its frame whatever the scores say.  A video's verdict is its worst
keyframe's.  A subject nothing could score goes to review, never `approved`.
Output per frame in Hive's shape `{time, classes: [{class, score}]}`.
Pure: reads and writes nothing (the moderator fetches scores and look-alikes).
"""
from __future__ import annotations

from .. import taxonomy
from ..policy import Policy
from .similarity import VERDICTS, _round
from .subjects import Subject

SEVERITY = {"approved": 0, "review": 1, "rejected": 2}


def evaluate(scores: dict[str, float | None], pol: Policy) -> tuple[str, list[dict]]:
    """(status, triggered categories) of one frame under a policy."""
    triggered = []
    for cat, threshold in pol.thresholds().items():
        s = scores.get(cat)
        if s is None:
            continue
        if s >= threshold:
            action = "reject"
        elif pol.review_band > 0 and s >= threshold - pol.review_band:
            action = "review"
        else:
            continue
        triggered.append({"category": cat, "parent": taxonomy.parent(cat), "score": _round(s),
                          "threshold": threshold, "action": action})
    triggered.sort(key=lambda t: (t["action"] != "reject", -t["score"]))
    if any(t["action"] == "reject" for t in triggered):
        return "rejected", triggered
    return ("review" if triggered else "approved"), triggered


def reasons(status: str, categories: list[dict], sim: dict | None) -> list[dict]:
    out = []
    if sim and VERDICTS[sim["verdict"]] == status:
        out.append({"similar_to": sim["coactive_image_id"], "similarity": sim["similarity"],
                    "verdict": sim["verdict"]})
    wanted = {"rejected": "reject", "review": "review"}.get(status)
    out += [c for c in categories if c["action"] == wanted]
    return out


def judge(s: Subject, scores: dict[str, dict], similar: dict[str, dict], pol: Policy) -> dict:
    """The model's result for one subject from its frames' scores and look-alikes."""
    frames, worst, sims = [], "approved", []
    per_cat: dict[str, dict] = {}
    checked = pol.thresholds()
    scored = False
    for aid, t in s.frames:
        sc = scores.get(aid, {})
        scored = scored or any(sc.get(c) is not None for c in checked)
        status, trig = evaluate(sc, pol)
        sim = similar.get(aid)
        if sim and sim["similarity"] >= pol.similarity:
            # a listed look-alike decides this frame, whatever the model says
            status = VERDICTS[sim["verdict"]]
            sims.append(dict(sim, time=t / 1000.0))
        worst = max(worst, status, key=SEVERITY.get)
        for tr in trig:
            prev = per_cat.get(tr["category"])
            if prev is None or tr["score"] > prev["score"]:
                per_cat[tr["category"]] = dict(tr, time=t / 1000.0) if s.kind == "video" else tr
        frames.append({"time": t / 1000.0, "classes": [
            {"class": c, "score": _round(v)} for c, v in sc.items() if v is not None]})
    categories = sorted(per_cat.values(), key=lambda t: (t["action"] != "reject", -t["score"]))
    status = worst
    deciding = [x for x in sims if VERDICTS[x["verdict"]] == status] or sims
    best_sim = max(deciding, key=lambda x: x["similarity"], default=None)
    if best_sim is not None and s.kind == "asset":
        best_sim.pop("time", None)
    why = reasons(status, categories, best_sim)
    if not scored and not sims:
        # Nothing could look at it (e.g. a dataset embedded only with CLIP and no category
        # concepts on CLIP): a person must, it is not "approved".
        status = "review"
        why = [{"unscored": f"no head of the policy's categories could score this "
                            f"{s.media_type}; give its dataset {taxonomy.BUILTIN_ENCODER} vectors "
                            "or label the categories on its encoder"}]
    return {
        "coactive_image_id": s.subject_id if s.kind == "asset" else None,
        "coactive_video_id": s.coactive_video_id,
        "media_type": s.media_type,
        "path": s.path,
        "sha256": s.sha256,
        "subject_kind": s.kind,
        "subject_id": s.subject_id,
        "model_status": status,
        "categories": categories,
        "similar": best_sim,
        "reasons": why,
        "output": frames,
    }
