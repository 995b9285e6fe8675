"""Write the shipped quality of the built-ins (`concepts/library_quality.json`) from a quality run.

    python benchmarks/quality.py --zero-shot-only --out artifacts/quality.json
    python benchmarks/library_quality.py artifacts/quality.json      # -> concepts/library_quality.json

Per starter-library concept and moderation category: the zero-shot row of `benchmarks/quality.py`
(held-out AUROC, TPR/FPR of `c = 1` at its default threshold, best TPR at FPR <= 2%) and a status
by `concepts.quality.status`.  A category the library's concept of the same name took is read
from its `moderation_<name>` row (the category's own head).  Categories scored by a shipped model
(open_nsfw, NudeNet) or by nothing are listed too, unmeasurable on this set, with why.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from concepts import catalogue, quality, taxonomy  # noqa: E402
from concepts.moderation import analyzed  # noqa: E402

OUT = Path(quality.__file__).with_name("library_quality.json")


def entry(row: dict) -> dict:
    m = row["metrics"]
    r = lambda x, d=4: None if x is None else round(x, d)  # noqa: E731
    out = {"label": row["label"], "n_pos": m["n_pos"], "n": m["n"], "auroc": r(m["auroc"]),
            "threshold": r(row["threshold"], 5), "threshold_source": row.get("threshold_source"),
            "tpr": r(m["tpr"]), "fpr": r(m["fpr"]), "tpr_at_2fpr": r(m["tpr_at_2fpr"]),
            "status": quality.status(m["auroc"], m["n_pos"])}
    if out["auroc"] is None:
        out["note"] = f"{m['n_pos']} held-out positives of {row['label']} in the dev set"
    elif out["n_pos"] < quality.MIN_POSITIVES:
        out["note"] = f"only {m['n_pos']} held-out positives: the figures are noise"
    return out


def build(res: dict) -> dict:
    rows = {r["column"]: r for r in res["zero_shot"]}
    concepts = {e.name: entry(rows[e.name]) for e in catalogue.LIBRARY if e.name in rows}
    categories = {}
    for name in taxonomy.CATEGORIES:
        row = rows.get(f"moderation_{name}") or rows.get(name)
        if row is not None and row["origin"] in ("moderation", "library") and row["label"]:
            categories[name] = entry(row)
            if name in analyzed.model_categories(["nsfw", "nudity"]):
                categories[name]["note"] = "the NudeNet part of its score is not measured here"
        elif name in analyzed.model_categories(["nsfw", "nudity"]):
            categories[name] = {"n_pos": 0, "auroc": None, "status": "unmeasurable",
                                "note": f"scored by {analyzed.model_categories(['nsfw', 'nudity'])[name]}; "
                                        "no nudity in the dev set (and none available to the project)"}
        elif catalogue.moderation_definition(taxonomy.CATEGORIES[name].entry) is None:
            categories[name] = {"n_pos": 0, "auroc": None, "status": "unscored",
                                "note": "no built-in definition: empty until labelled"}
        else:
            categories[name] = {"n_pos": 0, "auroc": None, "status": "unmeasurable",
                                "note": "no labelled positives of it in the dev set"}
    return {"devset": res["devset"], "encoder": res["encoder"], "images": res["images"], "max_fpr": 0.02,
            "min_positives": quality.MIN_POSITIVES, "measured": str(date.today()),
            "produced_by": "benchmarks/quality.py --zero-shot-only, then benchmarks/library_quality.py",
            "concepts": concepts, "categories": categories}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("quality_json", type=Path)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    data = build(json.loads(args.quality_json.read_text()))
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    for kind in ("concepts", "categories"):
        for n, e in data[kind].items():
            print(f"{kind[:-1]:<9} {n:<22} {e['status']:<13} AUROC {e.get('auroc')}  TPR {e.get('tpr')}  "
                  f"FPR {e.get('fpr')}  ({e.get('n_pos')} pos)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
