"""Preprocessing and encoder study for issue 15: centre crop vs letterbox vs both, lite0 vs lite2.

    python benchmarks/views.py [--cache DIR] [--encoders imagenet-lite0,imagenet-lite2] [--out artifacts/views.json]

Encodes every dev-set image (`benchmarks/devset.py`) once per view (crop, letterbox) and per
encoder, decoding as ingest does (`ingest.decode.open_image` at the encoder's target size), and
measures on the held-out half: zero-shot AUROC of the starter library's built-in heads (the sum
of their ImageNet class probabilities) and of text probes (ConSE), and 4-shot logistic
regression (`concepts.labeled.fit`, 4 positives + 32 negatives from the train half, mean of
--seeds seeds).  "both" is the mean of the two views' outputs, as `<encoder>:both` stores it.
With two encoders it also measures their combination as `imagenet-lite0+lite2` stores it:
`features` concatenated, `probs` averaged.

Photos: the bundled photos with a known ImageNet class (`PHOTO_CLASSES`, a hand-made map),
each as is and in four reshaped variants a warehouse meets (`PHOTO_VARIANTS`: a wide 2:1 and a
tall 1:2 band cut from the photo, the photo centred on a 2:1 and a 3:1 grey canvas): top-1 and
top-5 agreement with the photo's classes and the probability mass on them, per view.
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
from benchmarks.quality import LIBRARY, PROBES, subsample  # noqa: E402

# Each bundled photo's ImageNet classes (any synonym of a timm class description).
PHOTO_CLASSES = {
    "chelsea": ["tabby", "tiger cat", "Egyptian cat"],
    "coffee": ["espresso", "cup", "coffee mug"],
    "rocket": ["missile", "projectile", "space shuttle"],
    "clock": ["wall clock", "analog clock"],
    "motorcycle": ["moped", "motor scooter", "crash helmet", "disc brake"],
    "china": ["palace", "monastery", "stupa"],
    "flower": ["daisy"],
    "camera": ["tripod", "reflex camera", "Polaroid camera"],
    "horse": ["sorrel"],
    "astronaut": ["space shuttle", "military uniform", "suit"],
}
VIEWS = ("crop", "letterbox")
# "flip" is the crop of the mirrored image; "crop+flip" the mean of the two (test-time flip averaging).
EXTRA_VIEWS = ("flip",)
PHOTO_VARIANTS = ("as is", "band 2:1", "band 1:2", "pad 2:1", "pad 3:1")
SHORT = {"imagenet-lite0": "lite0", "imagenet-lite2": "lite2"}


def photo_variant(im, variant: str):
    """The photo reshaped as a warehouse might hold it (a panorama-like band, a padded banner)."""
    from PIL import Image

    w, h = im.size
    if variant == "band 2:1":  # the full width, a centred band half as high
        bh = min(h, w // 2)
        return im.crop((0, (h - bh) // 2, w, (h - bh) // 2 + bh))
    if variant == "band 1:2":
        bw = min(w, h // 2)
        return im.crop(((w - bw) // 2, 0, (w - bw) // 2 + bw, h))
    if variant.startswith("pad "):
        r = int(variant[4])
        cw = max(w, r * h)
        canvas = Image.new("RGB", (cw, h), (128, 128, 128))
        canvas.paste(im, ((cw - w) // 2, 0))
        return canvas
    return im


def encode_views(enc, images_bytes: list[bytes], views=VIEWS, batch: int = 32, reshape=None) -> dict:
    """{view: {column: (N, D)}} for each of `views`, plus "both" (their mean) when both are there."""
    import numpy as np
    import torch

    from PIL import Image

    from ingest.decode import open_image

    target = int(round(enc.input_size / enc.crop_pct))
    out = {v: {"features": [], "probs": []} for v in views}
    t0 = time.perf_counter()
    for s in range(0, len(images_bytes), batch):
        ims = [open_image(b, target=target)[0] for b in images_bytes[s:s + batch]]
        if reshape:
            ims = [reshape(im) for im in ims]
        for v in views:
            t = torch.stack([enc._crop(im) if v == "crop" else enc._letterbox(im) if v == "letterbox"
                             else enc._crop(im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)) for im in ims])
            r = enc.encode(t)
            out[v]["features"].append(r["features"])
            out[v]["probs"].append(r["probs"])
        if s % 640 == 0 and len(images_bytes) > batch:
            print(f"  {enc.name}: encoded {s + len(ims)} / {len(images_bytes)} "
                  f"({(s + len(ims)) * len(views) / (time.perf_counter() - t0):.1f} views/s)", flush=True)
    res = {v: {k: np.concatenate(x) for k, x in d.items()} for v, d in out.items()}
    if set(VIEWS) <= set(res):
        res["both"] = {k: (res["crop"][k] + res["letterbox"][k]) / 2 for k in res["crop"]}
    if {"crop", "flip"} <= set(res):
        res["crop+flip"] = {k: (res["crop"][k] + res["flip"][k]) / 2 for k in res["crop"]}
    return res


def derived_views(views) -> tuple:
    """The means `encode_views` adds to the views it encoded."""
    return (("both",) if set(VIEWS) <= set(views) else ()) + (("crop+flip",) if {"crop", "flip"} <= set(views) else ())


def settings_of(V: dict, idx: dict, encs: list[str]) -> dict:
    """{setting: (features, probs, item indices)}: "<enc>/<view>" for every encoded view, and for
    two encoders the combo ("lite0+lite2/<view>": features side by side, probs averaged) plus the
    first encoder restricted to the second's images ("<enc>/<view> @sub"), to compare like with like."""
    import numpy as np

    out = {f"{SHORT.get(e, e)}/{v}": (d["features"], d["probs"], idx[e]) for e in encs for v, d in V[e].items()}
    if len(encs) == 2:
        a, b = encs
        pos = {k: n for n, k in enumerate(idx[a].tolist())}
        rows = np.array([pos[k] for k in idx[b].tolist()])
        for v in V[b]:
            if v not in V[a]:
                continue
            fa, pa = V[a][v]["features"][rows], V[a][v]["probs"][rows]
            if len(idx[b]) < len(idx[a]):
                out[f"{SHORT.get(a, a)}/{v} @sub"] = (fa, pa, idx[b])
            out[f"lite0+lite2/{v}"] = (np.hstack([fa, V[b][v]["features"]]), (pa + V[b][v]["probs"]) / 2, idx[b])
    return out


def tables(res: dict) -> str:
    """Markdown: zero-shot and 4-shot AUROC per setting (held-out half), and the photos' agreement."""
    def num(x):
        return "—" if x is None else f"{x:.3f}"

    out = []
    for key, title, first in (("zero_shot", "Zero-shot AUROC", "concept"), ("four_shot", "4-shot AUROC", "label")):
        rows = res[key]
        cols = [c for c in dict.fromkeys(k for r in rows for k in r) if c not in ("concept", "label") and
                not c.endswith(" n_pos")]
        keep = [r for r in rows if any(r.get(c) is not None for c in cols)]
        if not keep:
            continue
        out += [f"{title} (held-out positives in brackets):", "",
                f"| {first} | " + " | ".join(cols) + " |", "| --- | " + " | ".join("---:" for _ in cols) + " |"]
        for r in keep:
            n = r.get(f"{cols[0]} n_pos")
            out.append(f"| {r[first]} ({n}) | " + " | ".join(num(r.get(c)) for c in cols) + " |")
        out.append("")
    summ = res.get("photo_summary") or {}
    if summ:
        cols = list(next(iter(summ.values())))
        out += ["Photos with a known ImageNet class: top-1 / top-5 agreement, mass on their classes:", "",
                "| variant | " + " | ".join(cols) + " |", "| --- | " + " | ".join("---" for _ in cols) + " |"]
        for variant, by in summ.items():
            out.append(f"| {variant} | " + " | ".join(
                f"{by[c]['top1']:.2f} / {by[c]['top5']:.2f} / {by[c]['mass']:.3f}" for c in cols) + " |")
    return "\n".join(out)


def auroc(y, s):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < sum(y) < len(y) else None


def main() -> None:
    import numpy as np

    import encoders
    from concepts import catalogue
    from concepts.labeled import fit
    from concepts.text import text_head
    from encoders.imagenet import class_indices, imagenet_class_names

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=devset.DEFAULT_CACHE)
    ap.add_argument("--out", type=Path, default=Path("artifacts/views.json"))
    ap.add_argument("--encoders", default="imagenet-lite0,imagenet-lite2")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--limit", type=int, default=None, help="a smoke run: the photos and every k-th other image")
    ap.add_argument("--negatives-every", type=int, default=1,
                    help="keep every image with a label (positive or ambiguous), the photos, and every N-th other one")
    ap.add_argument("--first-views", default="crop,letterbox",
                    help="views of the first encoder (crop, letterbox, flip: the mirrored crop)")
    ap.add_argument("--second-views", default="crop,letterbox", help="views of the encoders after the first")
    ap.add_argument("--second-stride", type=int, default=1,
                    help="encoders after the first see every N-th image (plus the photos and --keep-labels)")
    ap.add_argument("--encode-only", default=None, help="only encode (and save) this encoder's vectors")
    ap.add_argument("--keep-labels", default="alcohol", help="labels whose images the stride never drops")
    ap.add_argument("--render", type=Path, default=None, help="only print the tables of a saved JSON")
    args = ap.parse_args()
    if args.render:
        print(tables(json.loads(args.render.read_text())))
        return
    t0 = time.perf_counter()
    print(f"cores: {os.cpu_count()}; load {os.getloadavg()}", flush=True)
    set_dir, items = devset.build(args.cache)
    if args.limit:
        step = max(1, len(items) // args.limit)
        items = [it for k, it in enumerate(items) if it.source == "photos" or k % step == 0]
    items = subsample(items, args.negatives_every)
    print(f"{len(items)} images (negatives: every {args.negatives_every})", flush=True)
    paths = [set_dir / it.path for it in items]
    encs = [e.strip() for e in args.encoders.split(",") if e.strip()]
    keep = set(args.keep_labels.split(",")) if args.keep_labels else set()
    names = imagenet_class_names()
    res = {"devset": devset.NAME, "images": len(items), "negatives_every": args.negatives_every,
           "encoders": encs, "seeds": args.seeds, "second_views": args.second_views,
           "second_stride": args.second_stride, "keep_labels": sorted(keep),
           "load_before": os.getloadavg(), "encode_s": {}, "zero_shot": [], "four_shot": [], "photos": []}
    V, idx = {}, {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for n, e in enumerate(encs):
        views = tuple(v for v in (args.first_views if n == 0 else args.second_views).split(",") if v)
        stride = 1 if n == 0 else args.second_stride
        idx[e] = np.array([k for k, it in enumerate(items) if k % stride == 0 or it.source == "photos"
                           or (set(it.positives) | set(it.ambiguous)) & keep])
        vec_file = args.out.with_name(f"{args.out.stem}-{SHORT.get(e, e)}.npz")
        if args.encode_only and e != args.encode_only:
            continue
        if vec_file.exists():
            z = np.load(vec_file)
            held = z["index"] if "index" in z.files else np.arange(len(items))
            assert len(held) == len(idx[e]) and (held == idx[e]).all(), f"{vec_file} holds other images: delete it"
            V[e] = {v: {"features": z[f"{v}_features"], "probs": z[f"{v}_probs"]}
                    for v in views + derived_views(views)}
            continue
        enc = encoders.get_encoder(e)
        t = time.perf_counter()
        V[e] = encode_views(enc, [paths[k].read_bytes() for k in idx[e]], views)
        res["encode_s"][e] = round(time.perf_counter() - t, 1)
        print(f"{e}: {len(idx[e])} images x {len(views)} views in {res['encode_s'][e]:.0f}s", flush=True)
        np.savez(vec_file, index=idx[e], **{f"{v}_{k}": a for v, d in V[e].items() for k, a in d.items()})
    if args.encode_only:
        return
    S = settings_of(V, idx, encs)
    test = [i for i, it in enumerate(items) if it.split == "test"]

    heads = {}
    for c in LIBRARY:
        cls = getattr(catalogue.BY_NAME.get(c), "imagenet", None)
        if cls:
            w = np.zeros(1000, np.float32)
            w[class_indices(names, cls)] = 1
            heads[c] = (w, LIBRARY[c])
    for p, lab in PROBES.items():
        heads[f'"{p}"'] = (text_head("imagenet-lite0", [p]).weights, lab)
    for c, (w, lab) in heads.items():
        row = {"concept": c, "label": lab}
        for v, (F, P, ix) in S.items():
            at = {k: n for n, k in enumerate(ix.tolist())}
            ys = [(devset.is_positive(items[i], lab), at[i]) for i in test if i in at]
            ys = [(t, r) for t, r in ys if t is not None]
            row[v] = auroc([t for t, _ in ys], P[[r for _, r in ys]] @ w)
            row[f"{v} n_pos"] = sum(t for t, _ in ys)
        res["zero_shot"].append(row)
        print("  zero-shot", json.dumps(row), flush=True)

    for lab in dict.fromkeys(list(PROBES.values()) + ["weapon", "handgun", "rifle", "pills", "drugs"]):
        row = {"label": lab}
        for v, (X, _, ix) in S.items():
            at = {k: n for n, k in enumerate(ix.tolist())}
            pos = [at[i] for i in sorted(at) if items[i].split == "train" and devset.is_positive(items[i], lab) is True]
            neg = [at[i] for i in sorted(at) if items[i].split == "train" and devset.is_positive(items[i], lab) is False]
            te = [(devset.is_positive(items[i], lab), at[i]) for i in test if i in at]
            te = [(t, r) for t, r in te if t is not None]
            if len(pos) < 4 or len(neg) < 32 or not any(t for t, _ in te):
                continue
            ref = X[np.random.default_rng(7).choice(len(X), min(2048, len(X)), replace=False)]
            aucs = []
            for s in range(args.seeds):
                r = random.Random(f"{lab}:4:{s}")
                p, n = r.sample(pos, 4), r.sample(neg, 32)
                w, b = fit(X[p + n], np.r_[np.ones(4), np.zeros(32)].astype(int), None, ref)
                aucs.append(auroc([t for t, _ in te], X[[r_ for _, r_ in te]] @ w + b))
            row[v] = statistics.fmean(aucs)
            row[f"{v} n_pos"] = sum(t for t, _ in te)
        if len(row) > 1:
            res["four_shot"].append(row)
            print("  4-shot", json.dumps(row), flush=True)

    photos = [(Path(it.path).stem.split("-")[0], set_dir / it.path) for it in items if it.source == "photos"]
    photos = [(stem, p) for stem, p in photos if stem in PHOTO_CLASSES]
    for variant in PHOTO_VARIANTS:
        PV = {e: encode_views(encoders.get_encoder(e), [p.read_bytes() for _, p in photos],
                              reshape=lambda im, v=variant: photo_variant(im, v)) for e in encs}
        PS = settings_of(PV, {e: np.arange(len(photos)) for e in encs}, encs)
        for k, (stem, _) in enumerate(photos):
            idx = [j for j, m in enumerate(names) if {x.strip() for x in m.split(",")} & set(PHOTO_CLASSES[stem])]
            row = {"photo": stem, "variant": variant}
            for v, (_, P, _) in PS.items():
                pr = P[k]
                top5 = np.argsort(-pr)[:5]
                row[v] = {"mass": float(pr[idx].sum()), "top1": int(int(pr.argmax()) in idx),
                          "top5": int(bool(set(top5.tolist()) & set(idx))), "top1_class": names[int(pr.argmax())]}
            res["photos"].append(row)
    settings = [k for k in res["photos"][0] if k not in ("photo", "variant")] if res["photos"] else []
    summary = {}
    for variant in PHOTO_VARIANTS + ("all",):
        rows = [r for r in res["photos"] if variant in ("all", r["variant"])]
        summary[variant] = {v: {m: statistics.fmean(r[v][m] for r in rows) for m in ("top1", "top5", "mass")}
                            for v in settings}
    res["photo_summary"] = summary
    for variant, by in summary.items():
        print(f"  photos {variant:<9} " + "  ".join(f"{v} {m['top1']:.2f}/{m['top5']:.2f}/{m['mass']:.3f}"
                                                    for v, m in by.items()), flush=True)
    res["total_s"] = round(time.perf_counter() - t0, 1)
    res["markdown"] = tables(res)
    print(res["markdown"])
    res["load_after"] = os.getloadavg()
    args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out} in {res['total_s']:.0f}s")


if __name__ == "__main__":
    main()
