"""Concept quality on a labelled dev set: AUROC and TPR/FPR at each concept's threshold, per method.

    apt-get install -y fonts-noto-color-emoji ruby-gemojione libjs-emojify cataclysm-dda-data
    python benchmarks/quality.py [--cache DIR] [--seeds 3] [--shots 4,16,64] [--out artifacts/quality.json]
    python benchmarks/quality.py --encoder imagenet-lite2 [--labels gun,weapon,alcohol] [--negatives-every 4]
    python benchmarks/quality.py --render artifacts/quality.json      # reprint the tables

Builds (or reuses) the dev set of `benchmarks/devset.py`, ingests it into a temporary warehouse
with the default encoder or --encoder (`Warehouse.open(root).ingest(...)`), installs the starter library
(`install_default_concepts`) and the moderation categories (`taxonomy.ensure_concepts`), and
reads every number through the public SQL, `SELECT coactive_image_id, <c>_prob, <c> FROM
coactive_table`, so it measures what a user gets.  Moderation categories whose name the library
already took (alcohol, syringe, pills, swimwear) are measured as `moderation_<name>`, the same
head under another name.

Methods: `text` (zero-shot: the concept's prompts or built-in head), `labels` (a labelled head:
k positives and 8k negatives drawn with a fixed seed from the train split), `fused` (the same
labels plus the concept's prompts, as `pixql concept label` on a text concept does: the late
fusion of `concepts/labeled.py`; called `both` before it was a fusion).  Every
figure is on the held-out split (split by drawing, see devset.py); labelled rows are the mean
over --seeds seeds; a k larger than the train positives is skipped.  Columns: AUROC
(scikit-learn `roc_auc_score` of `<c>_prob`), TPR and FPR of the `<c> = 1` flag, and the best
TPR any threshold reaches at FPR <= 2% (what a calibrated flag could give).  The issue-15 query
`handgun = 1 OR rifle = 1` is measured on the whole set: TPR on guns, FPR on everything else.
The moderation categories are built on `imagenet-lite0` only, so with another --encoder the
table has the library and the probes.  To bound a run: --labels keeps the subjects measured
against those labels, --negatives-every N ingests every labelled image and every N-th other one.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]  # benchmarks/http.py shadows http
sys.path.insert(0, str(_here.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from benchmarks import devset  # noqa: E402

# Built-in concept -> the dev-set label it should find.
LIBRARY = {"handgun": "handgun", "rifle": "rifle", "knife": "knife", "syringe": "syringe", "pills": "pills",
           "alcohol": "alcohol", "cigarette": "tobacco", "swimwear": "swimwear", "underwear": "underwear",
           "fight": "fight", "blood": "blood"}
MODERATION = {"violence": "weapon", "weapons": "weapon", "drugs": "drugs", "syringe": "syringe", "pills": "pills",
              "alcohol": "alcohol", "tobacco": "tobacco", "gambling": "gambling", "suggestive": "swim_or_underwear",
              "female_underwear": "swim_or_underwear", "swimwear": "swimwear", "revealing_clothes": None}
PROBES = {"a gun": "gun", "a weapon": "weapon", "alcohol": "alcohol", "beer or wine": "alcohol",
          "a knife": "knife", "a cigarette": "tobacco"}
NEG_PER_POS = 8
MAX_FPR = 0.02


def load() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: %.2f, %.2f, %.2f" % os.getloadavg()


def metrics(y: list[bool], prob: list[float], flag: list[int]) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score, roc_curve

    y, prob, flag = np.asarray(y, bool), np.nan_to_num(np.asarray(prob, float), nan=0.0), np.asarray(flag, float)
    out = {"n_pos": int(y.sum()), "n": int(len(y)), "auroc": None, "tpr": None, "fpr": None, "tpr_at_2fpr": None}
    if 0 < y.sum() < len(y):
        fpr, tpr, _ = roc_curve(y, prob)
        out.update(auroc=float(roc_auc_score(y, prob)), tpr=float(flag[y].mean()), fpr=float(flag[~y].mean()),
                   tpr_at_2fpr=float(tpr[fpr <= MAX_FPR].max()))
    return out


class Bench:
    def __init__(self, wh, items: list, ids: dict[str, str]):
        self.wh, self.items, self.ids = wh, items, ids  # ids: item path -> coactive_image_id

    def read(self, concept: str) -> dict[str, tuple[float, int]]:
        rows = self.wh.sql(f"SELECT coactive_image_id, {concept}_prob, {concept} FROM coactive_table").fetchall()
        return {r[0]: (r[1], r[2] or 0) for r in rows}

    def evaluate(self, concept: str, label: str, split: str | None = "test", exclude=()) -> dict:
        scores = self.read(concept)
        y, p, f = [], [], []
        for it in self.items:
            t = devset.is_positive(it, label)
            aid = self.ids.get(it.path)
            if t is None or aid is None or aid in exclude or (split and it.split != split):
                continue
            y.append(t)
            p.append(scores[aid][0])
            f.append(scores[aid][1])
        return metrics(y, p, f)

    def draw(self, label: str, k: int, seed: int) -> tuple[list[str], list[str]] | None:
        pos = [self.ids[it.path] for it in self.items if it.split == "train" and devset.is_positive(it, label) is True]
        neg = [self.ids[it.path] for it in self.items if it.split == "train" and devset.is_positive(it, label) is False]
        test_pos = any(it.split == "test" and devset.is_positive(it, label) is True for it in self.items)
        if len(pos) < k or not test_pos:  # too few labels to draw, or nothing to measure on
            return None
        rng = random.Random(f"{label}:{k}:{seed}")
        return rng.sample(sorted(pos), k), rng.sample(sorted(neg), min(len(neg), NEG_PER_POS * k))

    def shot(self, label: str, k: int, seeds: int, prompts: list[str] | None, negatives=None) -> dict | None:
        runs = []
        for s in range(seeds):
            drawn = self.draw(label, k, s)
            if drawn is None:
                return None
            name = f"qbench_{label}_{k}_{s}"
            # No bulk scoring: the column is then the SQL macro, which gives the same numbers as the
            # score cache (the concept is read once and deleted), at a fraction of the cost.
            self.wh.create_concept(name, prompts=prompts or None, negative_prompts=negatives or None,
                                   positive=drawn[0], negative=drawn[1], materialize=False)
            try:
                runs.append(self.evaluate(name, label))
            finally:
                self.wh.delete_concept(name)
        out = {"n_pos": runs[0]["n_pos"], "n": runs[0]["n"], "seeds": seeds}
        for key in ("auroc", "tpr", "fpr", "tpr_at_2fpr"):
            vals = [r[key] for r in runs if r[key] is not None]
            out[key] = statistics.fmean(vals) if vals else None
        aucs = [r["auroc"] for r in runs if r["auroc"] is not None]
        out["auroc_sd"] = statistics.pstdev(aucs) if len(aucs) > 1 else None
        return out


def subsample(items: list, every: int) -> list:
    """Every image with a label (positive or ambiguous), the photos, and every `every`-th other one."""
    if every <= 1:
        return items
    others = [it for it in items if not (it.positives or it.ambiguous or it.source == "photos")]
    dropped = {it.path for k, it in enumerate(others) if k % every}
    return [it for it in items if it.path not in dropped]


def ingest(root: Path, images: list[Path], batch_size: int, workers: int | None, encoder: str | None = None):
    from warehouse import Warehouse

    wh = Warehouse.open(root)
    t = time.perf_counter()
    report = wh.ingest([str(p) for p in images], dataset="devset", encoder=encoder, progress=False,
                       batch_size=batch_size, workers=workers)
    return wh, time.perf_counter() - t, report


def install(wh, encoder: str) -> dict[str, str]:
    """Install the library and the moderation categories; return {column name: origin}."""
    from concepts import catalogue, library, registry, taxonomy

    wh.install_default_concepts()
    taxonomy.ensure_concepts(wh)
    # Which of the two made each name (install order is the CLI's: library first, then moderation).
    made = {e.name: "library" for e in library.DEFAULTS}
    made.update({n: "moderation" for n in taxonomy.CATEGORIES if n not in made})
    for name in MODERATION if encoder == taxonomy.BUILTIN_ENCODER else ():
        # The library took the name: the moderation definition's head under another name.
        mdef = catalogue.moderation_definition(catalogue.BY_NAME[name])
        made_head = catalogue.head_for(mdef, taxonomy.BUILTIN_ENCODER) if mdef else None
        if made.get(name) == "library" and made_head and not registry.exists(wh, f"moderation_{name}"):
            head, prompts, negatives = made_head
            registry.create_from_head(wh, f"moderation_{name}", head, prompts=prompts, negative_prompts=negatives)
            made[f"moderation_{name}"] = "moderation"
    return made


def fmt(x, digits=3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def cell(m: dict | None) -> str:
    if not m or m.get("auroc") is None:
        return "—"
    return f"{m['auroc']:.3f} ({m['tpr']:.2f}/{m['fpr']:.3f}; {m['tpr_at_2fpr']:.2f})"


def tables(res: dict) -> str:
    sub = f", every {res['negatives_every']}th unlabelled image" if res.get("negatives_every", 1) > 1 else ""
    lines = [f"Dev set `{res['devset']}` ({res['images']} images{sub}), held-out split, encoder `{res['encoder']}`; "
             f"labelled rows: mean of {res['seeds']} seeds, k positives + {NEG_PER_POS}k negatives.", "",
             "| concept | origin | label (test pos / n) | threshold (source) | AUROC | TPR@thr | FPR@thr | TPR@FPR≤2% |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    unmeasured = []
    for r in res["zero_shot"]:
        m = r["metrics"]
        if m["auroc"] is None:
            unmeasured.append(f"{r['concept']} ({r['label'] or 'no label'}, {m['n_pos']} held-out positives)")
            continue
        lab = f"{r['label']} ({m['n_pos']} / {m['n']})" if r["label"] else "no labels"
        src = (r.get("threshold_source") or "").split(" ")[0].rstrip(":")
        lines.append(f"| {r['concept']} | {r['origin']} | {lab} | {r['threshold']:.3g} ({src}) | {fmt(m['auroc'])} | "
                     f"{fmt(m['tpr'], 2)} | {fmt(m['fpr'])} | {fmt(m['tpr_at_2fpr'], 2)} |")
    shots = res["shots"]
    if unmeasured:
        lines.append("")
        lines.append("Not measurable on this set: " + ", ".join(unmeasured) + ".")
    empty = [f"{r['subject']} ({r['method']})" for r in res["few_shot"] if not r["by_k"]]
    lines += ["", "Labelled heads: AUROC (TPR/FPR at the threshold; TPR at FPR ≤ 2%).", "",
              "| subject | label | method | " + " | ".join(f"{k}-shot" for k in shots) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in shots) + " |"]
    for r in res["few_shot"]:
        if not r["by_k"]:
            continue
        lines.append(f"| {r['subject']} | {r['label']} | {r['method']} | "
                     + " | ".join(cell(r["by_k"].get(str(k))) for k in shots) + " |")
    if empty:
        lines += ["", "Too few labels in the train half, or no held-out positive: " + ", ".join(empty) + "."]
    q = res["or_query"]
    lines += ["", f"`handgun = 1 OR rifle = 1` on the whole set: TPR {q['tpr']:.3f} ({q['tp']} of {q['n_pos']} guns), "
              f"FPR {q['fpr']:.4f} ({q['fp']} of {q['n_neg']} others)."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=devset.DEFAULT_CACHE, help="dev-set cache (or $PIXQL_DEVSET_CACHE)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--shots", default="4,16,64")
    ap.add_argument("--out", type=Path, default=Path("artifacts/quality.json"))
    ap.add_argument("--root", type=Path, default=None, help="warehouse directory (default: a temporary one)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--render", type=Path, default=None, help="only print the tables of a saved JSON")
    ap.add_argument("--zero-shot-only", action="store_true", help="skip the labelled heads")
    ap.add_argument("--encoder", default=None, help="the warehouse's encoder (default: PixQL's default)")
    ap.add_argument("--labels", default=None, help="only the subjects measured against these labels (comma list)")
    ap.add_argument("--negatives-every", type=int, default=1, help="ingest every N-th unlabelled image")
    args = ap.parse_args()
    if args.render:
        print(tables(json.loads(args.render.read_text())))
        return
    shots = [int(k) for k in args.shots.split(",") if k]

    from concepts import registry

    started = time.perf_counter()
    load_before = load()
    print(f"cores: {os.cpu_count()}; {load_before}")
    set_dir, items = devset.build(args.cache)
    wanted = set(args.labels.split(",")) if args.labels else None
    items = subsample(items, args.negatives_every)  # the same images as benchmarks/views.py's
    devset.print_composition(items)
    tmp = Path(tempfile.mkdtemp(prefix="pixql-quality-")) if args.root is None else args.root
    try:
        wh, ingest_s, report = ingest(tmp, [set_dir / it.path for it in items], args.batch_size, args.workers,
                                      args.encoder)
        by_path = {str(Path(p).resolve()): i for i, p in wh.sql("SELECT coactive_image_id, path FROM coactive_table").fetchall()}
        ids = {it.path: by_path[str((set_dir / it.path).resolve())] for it in items
               if str((set_dir / it.path).resolve()) in by_path}
        print(f"ingest: {report.assets_added} new assets ({report.skipped} already stored, {report.errors} errors) "
              f"in {ingest_s:.0f}s; {len(ids)} of {len(items)} images in the warehouse")
        encoder = registry.default_encoder(wh)
        origins = install(wh, encoder)
        # A reused --root may hold versions made before the default rule: give them its threshold.
        for c in registry.list_concepts(wh):
            if c.threshold_source != registry.USER:
                registry.recalibrate(wh, c.name)
        bench = Bench(wh, items, ids)
        res = {"devset": devset.NAME, "images": len(ids), "encoder": encoder, "seeds": args.seeds, "shots": shots,
               "negatives_every": args.negatives_every, "labels": sorted(wanted) if wanted else None,
               "composition": devset.composition(items), "neg_per_pos": NEG_PER_POS, "zero_shot": [], "few_shot": []}

        subjects = [(c, LIBRARY[c], "library") for c in LIBRARY]
        subjects += [(c if origins.get(c) != "library" else f"moderation_{c}", lab, "moderation")
                     for c, lab in MODERATION.items()]
        probe_names = {}
        for k, (prompt, lab) in enumerate(PROBES.items()):
            if wanted and lab not in wanted:
                continue
            probe_names[prompt] = f"qprobe_{k}"
            if registry.exists(wh, probe_names[prompt]):  # a reused --root
                wh.delete_concept(probe_names[prompt])
            for stale in [c.name for c in registry.list_concepts(wh) if c.name.startswith("qbench_")]:
                wh.delete_concept(stale)  # left by an interrupted run
            wh.create_concept(probe_names[prompt], prompts=[prompt])
            subjects.append((probe_names[prompt], lab, "probe"))
        if wanted:
            subjects = [s for s in subjects if s[1] in wanted]
        for concept, lab, origin in subjects:
            if not registry.exists(wh, concept):
                continue
            c = registry.get(wh, concept)
            m = bench.evaluate(concept, lab) if lab else metrics([], [], [])
            shown = next((f'"{p}"' for p, n in probe_names.items() if n == concept), concept)
            res["zero_shot"].append({"concept": shown, "column": concept, "origin": origin, "label": lab,
                                     "threshold": c.threshold, "threshold_source": c.threshold_source,
                                     "metrics": m})
            print(f"  zero-shot {concept:<28} {lab or '-':<18} AUROC {fmt(m['auroc'])}", flush=True)

        ys, flags = [], []
        rows = dict(wh.sql("SELECT coactive_image_id, (handgun = 1 OR rifle = 1) FROM coactive_table").fetchall())
        for it in items:
            t = devset.is_positive(it, "gun")
            if t is not None and it.path in ids:
                ys.append(t)
                flags.append(bool(rows[ids[it.path]]))
        tp = sum(f for y, f in zip(ys, flags) if y)
        fp = sum(f for y, f in zip(ys, flags) if not y)
        n_pos = sum(ys)
        res["or_query"] = {"tp": tp, "n_pos": n_pos, "fp": fp, "n_neg": len(ys) - n_pos,
                           "tpr": tp / max(n_pos, 1), "fpr": fp / max(len(ys) - n_pos, 1)}

        def few(subject, lab, method, prompts, negatives=None):
            if args.zero_shot_only or (wanted and lab not in wanted):
                return
            by_k = {}
            for k in shots:
                m = bench.shot(lab, k, args.seeds, prompts, negatives)
                if m is not None:
                    by_k[str(k)] = m
            res["few_shot"].append({"subject": subject, "label": lab, "method": method, "by_k": by_k})
            save(res, partial=True)
            print(f"  {method:<6} {subject:<24} " + " ".join(f"{k}:{fmt(m['auroc'])}" for k, m in by_k.items()),
                  flush=True)

        def save(res, partial=False):
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(dict(res, partial=partial), indent=1))

        save(res, partial=True)
        # The issue-15 goals first (gun, weapon, alcohol), so a partial JSON already holds them.
        for lab in dict.fromkeys(PROBES.values()):
            few(lab, lab, "labels", None)
        for prompt, lab in PROBES.items():
            few(f'"{prompt}"', lab, "fused", [prompt])
        for lab in dict.fromkeys(list(LIBRARY.values()) + [v for v in MODERATION.values() if v]):
            if lab not in PROBES.values():
                few(lab, lab, "labels", None)
        for concept, lab in LIBRARY.items():
            c = registry.get(wh, concept)
            few(concept, lab, "fused", c.prompts, c.negative_prompts)

        res.update(ingest_s=round(ingest_s, 1), ingest_new_assets=report.assets_added, total_s=round(time.perf_counter() - started, 1),
                   load_before=load_before, load_after=load(), cores=os.cpu_count())
        res["markdown"] = tables(res)
        print()
        print(res["markdown"])
        print()
        print(f"ingest {ingest_s:.0f}s, total {res['total_s']:.0f}s; before: {load_before}; after: {res['load_after']}")
        save(res)
        print(f"wrote {args.out}")
        wh.close()
    finally:
        if args.root is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
