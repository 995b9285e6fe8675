"""How text heads are built, chosen on the dev half: ConSE class text, membership cut, fusion weight.

    python benchmarks/quality_text.py [--cache DIR] [--encoder imagenet-lite0] [--out artifacts/quality_text.json]

Encodes the dev set of `benchmarks/devset.py` once (centre crop, as ingest does; vectors cached
next to --out) and, in numpy on the stored `probs` / `features` (the same linear heads the SQL
columns compute, so the same rankings), measures for the probes of `benchmarks/quality.py`:

* zero-shot ConSE variants: the class text (names; with WordNet hypernyms up to L levels at a
  penalty per level; with glosses) and the membership cut (margin below the best cosine, width);
* few-shot fusion (`concepts.labeled.fit`): the text weight `alpha` at k positives.

Every variant is scored on both halves; the choice is made on the train ("dev") half only, by
the mean AUROC over the probes, and the held-out ("test") half is reported for the chosen one.
Few-shot labels are drawn from the train half; for the dev score they are evaluated on the rest
of the train half.
"""
from __future__ import annotations

import argparse
import itertools
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
from benchmarks.quality import PROBES  # noqa: E402

GOALS = {("zero", '"a gun"'): 0.98, ("zero", '"alcohol"'): 0.90, ("4", '"a weapon"'): 0.98}


def auroc(y, s):
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if 0 < sum(y) < len(y) else None


def from_warehouse(items, set_dir, root: Path):
    """The vectors a `benchmarks/quality.py --root` run stored, in `items` order (one encoding)."""
    import numpy as np

    from concepts.labeled import vectors_for
    from concepts.registry import default_encoder
    from warehouse import Warehouse, catalog

    wh = Warehouse.open(root)
    try:
        con = wh.cursor()
        enc = default_encoder(wh)
        by_path = {str(Path(p).resolve()): i for i, p in wh.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}
        ids = [by_path[str((set_dir / it.path).resolve())] for it in items]
        cols = catalog.encoder_columns(con, enc)
        return enc, {c: vectors_for(con, wh.root, enc, c, int(cols[c]), ids) for c in ("features", "probs")}
    finally:
        wh.close()


def from_parts(items, set_dir, root: Path):
    """The vectors already written under a warehouse directory, read from its Parquet parts while
    an ingest is still running (no catalog lock); the items without vectors yet are left out."""
    import glob

    import numpy as np
    import pyarrow.parquet as pq

    paths = {}
    for f in glob.glob(str(root / "datasets/*/assets/*.parquet")):
        t = pq.read_table(f, columns=["coactive_image_id", "path"])
        paths.update(zip(t.column("coactive_image_id").to_pylist(), t.column("path").to_pylist()))
    vec = {}
    for f in glob.glob(str(root / "datasets/*/vectors/imagenet_lite0/*.parquet")):
        t = pq.read_table(f)
        F, P = (np.asarray(t.column(c).combine_chunks().flatten()).reshape(t.num_rows, -1) for c in ("features", "probs"))
        for k, i in enumerate(t.column("coactive_image_id").to_pylist()):
            vec[str(Path(paths[i]).resolve())] = (F[k], P[k])
    keep = [it for it in items if str((set_dir / it.path).resolve()) in vec]
    rows = [vec[str((set_dir / it.path).resolve())] for it in keep]
    return keep, {"features": np.stack([r[0] for r in rows]), "probs": np.stack([r[1] for r in rows])}


def encode(items, set_dir, name: str, out: Path, flip: bool):
    import numpy as np

    from benchmarks.views import encode_views
    import encoders

    f = out.with_name(f"{out.stem}-{name.replace(':', '_')}.npz")
    if f.exists():
        z = np.load(f)
        if len(z["probs"]) == len(items):
            return {k: z[k] for k in z.files}
    enc = encoders.get_encoder(name)
    data = [(set_dir / it.path).read_bytes() for it in items]
    t = time.perf_counter()
    V = encode_views(enc, data, ("crop",))["crop"]
    res = {"features": V["features"], "probs": V["probs"]}
    if flip:
        from PIL import ImageOps

        Fv = encode_views(enc, data, ("crop",), reshape=ImageOps.mirror)["crop"]
        res.update(flip_features=Fv["features"], flip_probs=Fv["probs"])
    print(f"{name}: encoded {len(items)} images in {time.perf_counter() - t:.0f}s", flush=True)
    np.savez(f, **res)
    return res


def main() -> None:
    import numpy as np

    import encoders
    from concepts.labeled import fit
    from encoders import conse
    from encoders.imagenet import imagenet_class_names

    ap = argparse.ArgumentParser()
    ap.add_argument("--cache", type=Path, default=devset.DEFAULT_CACHE)
    ap.add_argument("--encoder", default="imagenet-lite0")
    ap.add_argument("--out", type=Path, default=Path("artifacts/quality_text.json"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--root", type=Path, default=None, help="read the vectors of this quality.py --root warehouse")
    ap.add_argument("--parts", type=Path, default=None, help="read the Parquet parts of a warehouse being ingested")
    ap.add_argument("--skip-few", action="store_true")
    ap.add_argument("--flip", action="store_true", help="also encode mirrored images (flip-averaging)")
    ap.add_argument("--levels", default="0,2,4,6")
    ap.add_argument("--penalties", default="0.01,0.02,0.04")
    ap.add_argument("--margins", default="0.1,0.15,0.2,0.3")
    ap.add_argument("--widths", default="0.02,0.04,0.08")
    ap.add_argument("--alphas", default="0.5,1,1.5,2,3,4")
    args = ap.parse_args()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    print(f"cores {os.cpu_count()}, load {os.getloadavg()}", flush=True)
    set_dir, items = devset.build(args.cache)
    if args.parts:
        items, V = from_parts(items, set_dir, args.parts)
        print(f"{len(items)} images with vectors so far", flush=True)
    elif args.root:
        args.encoder, V = from_warehouse(items, set_dir, args.root)
    else:
        V = encode(items, set_dir, args.encoder, args.out, args.flip)
    views = {"crop": V["probs"]}
    if "flip_probs" in V:
        views["crop+flip"] = (V["probs"] + V["flip_probs"]) / 2
    names = imagenet_class_names()
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    wnids = [info.index_to_label_name(i) for i in range(1000)]
    halves = {h: [i for i, it in enumerate(items) if it.split == h] for h in ("train", "test")}

    def score(label, s, half, exclude=()):
        ys = [(devset.is_positive(items[i], label), i) for i in halves[half] if i not in exclude]
        ys = [(t, i) for t, i in ys if t is not None]
        return auroc([t for t, _ in ys], s[[i for _, i in ys]])

    res = {"devset": devset.NAME, "encoder": args.encoder, "zero_shot": [], "few_shot": []}
    probes = list(PROBES.items())
    grid = list(itertools.product([int(x) for x in args.levels.split(",")], (False, True),
                                  [float(x) for x in args.penalties.split(",")],
                                  [float(x) for x in args.margins.split(",")],
                                  [float(x) for x in args.widths.split(",")], (0.0, 1.0)))
    embed, prompt_vecs = conse.embed_sentences, {}

    def embed_cached(texts):  # the probes' embeddings, once
        if len(texts) == 1:
            if texts[0] not in prompt_vecs:
                prompt_vecs[texts[0]] = embed(texts)
            return prompt_vecs[texts[0]]
        return embed(texts)

    conse.embed_sentences = embed_cached
    memo = {}
    # Every variant's texts are a subset of the largest one's: embed those once (disk-cached).
    conse.class_similarity(["x"], names, conse.class_texts(names, wnids, max(int(x) for x in args.levels.split(",")), True))
    for levels, gloss, pen, margin, width, under in grid:
        if levels == 0 and not gloss and pen != float(args.penalties.split(",")[0]):
            continue
        conse.HYPERNYM_PENALTY, conse.GLOSS_PENALTY = pen, max(pen, 0.02)
        conse.CONSE_MARGIN, conse.CONSE_WIDTH = margin, width
        texts = conse.class_texts(names, wnids, levels, gloss)
        row = {"levels": levels, "gloss": gloss, "penalty": pen, "margin": margin, "width": width, "under": under}
        for prompt, lab in probes:
            m = conse.conse_weights([prompt], [], names, texts, wnids, under)[0]
            for view, P in views.items():
                s = P @ m
                row[f'"{prompt}" {view} train'] = score(lab, s, "train")
                row[f'"{prompt}" {view} test'] = score(lab, s, "test")
            memo[(levels, gloss, pen, margin, width, under, prompt)] = m
        res["zero_shot"].append(row)
    res["markdown"] = []
    for view in views:
        def dev_mean(r, view=view):
            return statistics.fmean(r[f'"{p}" {view} train'] for p, _ in probes)
        best = max(res["zero_shot"], key=dev_mean)
        base = next(r for r in res["zero_shot"] if (r["levels"], r["gloss"], r["margin"], r["width"], r["under"]) ==
                    (0, False, 0.15, 0.04, 0.0))
        print(f"\n[{view}] baseline vs chosen on dev (levels={best['levels']} gloss={best['gloss']} "
              f"penalty={best['penalty']} margin={best['margin']} width={best['width']}):")
        def key(p, half, view=view):
            return f'"{p}" {view} {half}'

        for p, _ in probes:
            print(f"  {p:<14} dev {base[key(p, 'train')]:.3f} -> {best[key(p, 'train')]:.3f}   "
                  f"held-out {base[key(p, 'test')]:.3f} -> {best[key(p, 'test')]:.3f}")
        for p, _ in probes:  # each probe's own best on dev, for comparison
            b = max(res["zero_shot"], key=lambda r, p=p: r[key(p, "train")])
            print(f"  own-best {p:<14} dev {b[key(p, 'train')]:.3f} held-out {b[key(p, 'test')]:.3f} "
                  f"(L={b['levels']} g={b['gloss']} pen={b['penalty']} m={b['margin']} w={b['width']} u={b['under']})")
        res[f"chosen_{view}"] = best
    args.out.write_text(json.dumps(res, indent=1))

    # Few-shot fusion on the chosen text heads.
    if args.skip_few:
        return
    best = res["chosen_crop"]
    enc = encoders.get_encoder(args.encoder)
    X = V["features"].astype(np.float64)
    ref = X[np.random.default_rng(7).choice(len(X), min(2048, len(X)), replace=False)]
    fusion_prompts = {"gun": "a gun", "weapon": "a weapon", "alcohol": "alcohol"}
    alphas = [float(a) for a in args.alphas.split(",")] + [None]
    for k in (4, 16):
        for lab, prompt in fusion_prompts.items():
            key = (best["levels"], best["gloss"], best["penalty"], best["margin"], best["width"], best["under"], prompt)
            base_key = next(k_ for k_ in memo if k_[0] == 0 and not k_[1] and k_[3:] == (0.15, 0.04, 0.0, prompt))
            for tname, tk in (("names", base_key), ("chosen", key)):
                if tk not in memo:
                    continue
                d = enc.prior_direction("probs", memo[tk], "features")
                pos = [i for i in halves["train"] if devset.is_positive(items[i], lab) is True]
                neg = [i for i in halves["train"] if devset.is_positive(items[i], lab) is False]
                if len(pos) < k + 3:
                    continue
                row = {"label": lab, "prompt": prompt, "k": k, "text": tname}
                for a in alphas:
                    dv, te = [], []
                    for seed in range(args.seeds):
                        r = random.Random(f"{lab}:{k}:{seed}")
                        p, n = r.sample(pos, k), r.sample(neg, 8 * k)
                        w, b = fit(X[p + n], np.r_[np.ones(k), np.zeros(8 * k)].astype(int), d, ref, alpha=a)
                        s = X @ w + b
                        dv.append(score(lab, s, "train", exclude=set(p + n)))
                        te.append(score(lab, s, "test"))
                    row[f"alpha={a}"] = {"dev": statistics.fmean(dv), "test": statistics.fmean(te)}
                res["few_shot"].append(row)
                print(f"  {k}-shot {lab:<8} {tname:<7} " + " ".join(
                    f"a={a}: {v['dev']:.3f}/{v['test']:.3f}" for a, v in
                    ((kk[6:], vv) for kk, vv in row.items() if kk.startswith("alpha="))), flush=True)
                args.out.write_text(json.dumps(res, indent=1))
    print(f"wrote {args.out}; load {os.getloadavg()}")


if __name__ == "__main__":
    main()
