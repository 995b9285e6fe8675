"""Preprocessing study for issue 15: centre crop vs letterbox vs both (two views averaged).

    python benchmarks/views.py [--cache DIR] [--wh /tmp/pixql-quality-wh] [--out artifacts/views.json]

Encodes every dev-set image (`benchmarks/devset.py`) and the bundled photos once per view
(crop, letterbox) with `imagenet-lite0`, decoding as ingest does (`ingest.decode.open_image`),
and measures on the held-out half: zero-shot AUROC of the starter library's built-in heads
(the sum of their ImageNet class probabilities) and of text probes (ConSE), and 4-shot
logistic regression (`concepts.labeled.fit`, 4 positives + 32 negatives from the train half,
mean of 3 seeds).  "both" is the mean of the two views' outputs, as `imagenet-lite0:both`
stores it.  On the photos, which have no concept labels, it reports the probability mass on
each photo's own ImageNet classes (a hand-made map, below) and whether the top-1 class is one.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import devset  # noqa: E402
from benchmarks.quality import LIBRARY, PROBES  # noqa: E402

# Each bundled photo's ImageNet classes (exact timm descriptions' first synonym match).
PHOTO_CLASSES = {
    "chelsea": ["tabby", "tiger cat", "Egyptian cat"],
    "coffee": ["espresso", "cup", "coffee mug"],
    "rocket": ["missile", "projectile", "space shuttle"],
    "clock": ["wall clock", "analog clock"],
    "motorcycle": ["moped", "motor scooter", "crash helmet", "disc brake"],
    "china": ["palace", "monastery", "pagoda", "stupa"],
    "flower": ["daisy"],
    "camera": ["tripod", "reflex camera", "Polaroid camera"],
    "horse": ["sorrel"],
    "astronaut": ["space shuttle", "military uniform", "suit"],
}
VIEWS = ("crop", "letterbox")


def encode_all(paths: list[Path], batch: int = 32) -> dict[str, dict[str, "np.ndarray"]]:
    import numpy as np
    import torch

    import encoders
    from ingest.decode import open_image

    enc = encoders.get_encoder("imagenet-lite0")
    out = {v: {"features": [], "probs": []} for v in VIEWS}
    for s in range(0, len(paths), batch):
        ims = [open_image(p.read_bytes(), target=256)[0] for p in paths[s:s + batch]]
        for v in VIEWS:
            t = torch.stack([enc._crop(im) if v == "crop" else enc._letterbox(im) for im in ims])
            r = enc.encode(t)
            out[v]["features"].append(r["features"])
            out[v]["probs"].append(r["probs"])
        if s % 640 == 0:
            print(f"  encoded {s + len(ims)} / {len(paths)}", flush=True)
    res = {v: {k: np.concatenate(x) for k, x in d.items()} for v, d in out.items()}
    res["both"] = {k: (res["crop"][k] + res["letterbox"][k]) / 2 for k in res["crop"]}
    return res


def auroc(y, s):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < sum(y) < len(y) else None


def main() -> None:
    import numpy as np

    from concepts.labeled import fit
    from concepts.text import text_head
    from concepts import catalogue
    from encoders.imagenet import class_indices, imagenet_class_names

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=devset.DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=Path("artifacts/views.json"))
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    t0 = time.perf_counter()
    set_dir, items = devset.build(args.cache)
    paths = [set_dir / it.path for it in items]
    vec_file = args.out.with_suffix(".npz")
    if vec_file.exists():
        z = np.load(vec_file)
        V = {v: {"features": z[f"{v}_features"], "probs": z[f"{v}_probs"]} for v in VIEWS + ("both",)}
    else:
        V = encode_all(paths)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        np.savez(vec_file, **{f"{v}_{k}": a for v, d in V.items() for k, a in d.items()})
    print(f"encoded in {time.perf_counter() - t0:.0f}s")
    names = imagenet_class_names()
    test = [i for i, it in enumerate(items) if it.split == "test"]
    res = {"devset": devset.NAME, "images": len(items), "zero_shot": [], "four_shot": [], "photos": []}

    heads = {}
    for c in LIBRARY:
        e = catalogue.BY_NAME.get(c)
        cls = getattr(e, "imagenet", None)
        if cls:
            w = np.zeros(1000, np.float32)
            w[class_indices(names, cls)] = 1
            heads[c] = (w, LIBRARY[c])
    for p, lab in PROBES.items():
        heads[f'"{p}"'] = (text_head("imagenet-lite0", [p]).weights, lab)
    for c, (w, lab) in heads.items():
        row = {"concept": c, "label": lab}
        for v in V:
            ys = [(devset.is_positive(items[i], lab), i) for i in test]
            ys = [(t, i) for t, i in ys if t is not None]
            s = V[v]["probs"][[i for _, i in ys]] @ w
            row[v] = auroc([t for t, _ in ys], s)
        res["zero_shot"].append(row)
        print("  zero-shot", row, flush=True)

    rng0 = np.random.default_rng(7)
    ref_idx = rng0.choice(len(items), 2048, replace=False)
    for lab in dict.fromkeys(list(PROBES.values()) + ["weapon", "handgun", "rifle", "pills", "drugs"]):
        pos = [i for i, it in enumerate(items) if it.split == "train" and devset.is_positive(it, lab) is True]
        neg = [i for i, it in enumerate(items) if it.split == "train" and devset.is_positive(it, lab) is False]
        te = [(devset.is_positive(items[i], lab), i) for i in test]
        te = [(t, i) for t, i in te if t is not None]
        if len(pos) < 4 or not any(t for t, _ in te):
            continue
        row = {"label": lab}
        for v in V:
            X = V[v]["features"]
            aucs = []
            for s in range(args.seeds):
                r = random.Random(f"{lab}:4:{s}")
                p, n = r.sample(sorted(pos), 4), r.sample(sorted(neg), 32)
                w, b = fit(X[p + n], np.r_[np.ones(4), np.zeros(32)].astype(int), None, X[ref_idx])
                aucs.append(auroc([t for t, _ in te], X[[i for _, i in te]] @ w + b))
            row[v] = statistics.fmean(aucs)
        res["four_shot"].append(row)
        print("  4-shot", row, flush=True)

    for i, it in enumerate(items):
        if it.source != "photos":
            continue
        stem = Path(it.path).stem.split("-")[0]
        cls = PHOTO_CLASSES.get(stem)
        if not cls:
            continue
        idx = [names.index(n) if n in names else next(k for k, m in enumerate(names) if m.split(",")[0] == n)
               for n in cls]
        row = {"photo": stem, "classes": cls}
        for v in V:
            pr = V[v]["probs"][i]
            row[v] = {"mass": float(pr[idx].sum()), "top1_ok": int(int(pr.argmax()) in idx),
                      "top1": names[int(pr.argmax())]}
        res["photos"].append(row)
        print("  photo", row, flush=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out} in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
