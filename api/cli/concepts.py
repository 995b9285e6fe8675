"""`pixql concept ...`, `pixql concepts install-defaults` and `pixql classify`: concepts from the shell."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .app import RootOption, app, fail, open_warehouse

concept_app = typer.Typer(help="Define, label and inspect visual concepts (columns of coactive_table).",
                          no_args_is_help=True)
concepts_app = typer.Typer(help="The concept library as a whole.", no_args_is_help=True)
app.add_typer(concept_app, name="concept")
app.add_typer(concepts_app, name="concepts")

JsonOption = typer.Option(False, "--json", help="Print JSON instead of a table.")


def _run(root, fn, read_only: bool = False):
    from concepts import ConceptError

    wh = open_warehouse(root, read_only=read_only, must_exist=True)
    try:
        return fn(wh)
    except (ConceptError, PermissionError) as e:
        fail(str(e))
    finally:
        wh.close()


def _table(rows: list[dict], columns: list[str], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    t = Table(header_style="bold")
    for c in columns:
        t.add_column(c, overflow="fold")
    for r in rows:
        t.add_row(*("" if r.get(c) is None else (f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]))
                    for c in columns))
    Console().print(t)


def _summary(c) -> dict:
    d = c.to_dict()
    d["labels"] = f"+{c.positive_labels} / -{c.negative_labels}"
    d["prompts"] = ", ".join(c.prompts)
    return d


@concept_app.command("create")
def create(
    name: str = typer.Argument(..., help="SQL identifier: becomes the columns NAME, NAME_latest_prob, NAME_prob."),
    prompt: Optional[List[str]] = typer.Option(None, "--prompt", "-p", help="Positive text prompt (repeatable)."),
    negative: Optional[List[str]] = typer.Option(None, "--negative", "-n", help="Negative text prompt (repeatable)."),
    positive_example: Optional[List[str]] = typer.Option(None, "--positive", help="Positive example: asset id or path."),
    negative_example: Optional[List[str]] = typer.Option(None, "--negative-example", help="Negative example: id or path."),
    threshold: Optional[float] = typer.Option(
        None, "--threshold", "-t", help="Probability at which NAME = 1 (default: the calibration rule, see README)."),
    description: Optional[str] = typer.Option(None, "--description", "-d"),
    encoder: Optional[str] = typer.Option(None, "--encoder", "-e", help="Vectors to read (default: the warehouse's)."),
    parent: Optional[str] = typer.Option(None, "--parent", help="Parent concept (two-level taxonomy)."),
    ray: Optional[str] = typer.Option(None, "--ray", is_flag=False, flag_value="auto", metavar="[ADDRESS]",
                                      help="Score the new version on a Ray cluster."),
    as_json: bool = JsonOption,
    root: Optional[Path] = RootOption,
):
    """Create a concept from prompts and/or labelled examples (version 1)."""
    def go(wh):
        return wh.create_concept(name, prompts=prompt, negative_prompts=negative, positive=positive_example,
                                 negative=negative_example, threshold=threshold, description=description,
                                 encoder=encoder, parent=parent, created_by="cli", **_engine(ray))

    c = _run(root, go)
    _print_concept(c, as_json)


def _print_concept(c, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(c.to_dict(), indent=2, default=str))
    else:
        typer.echo(f"{c.name} v{c.latest_version} ({c.kind}, {c.encoder}) threshold {c.threshold:.4g} "
                   f"({c.threshold_source}); "
                   f"labels +{c.positive_labels}/-{c.negative_labels}; columns: {c.name}, {c.name}_latest_prob")


@concept_app.command("label")
def label(
    name: str,
    positive: Optional[List[str]] = typer.Option(None, "--positive", "-p", help="Asset id or path (repeatable)."),
    negative: Optional[List[str]] = typer.Option(None, "--negative", "-n", help="Asset id or path (repeatable)."),
    remove: Optional[List[str]] = typer.Option(None, "--remove", help="Withdraw the label of an id or path."),
    no_train: bool = typer.Option(False, "--no-train", help="Store the labels without training a new version."),
    ray: Optional[str] = typer.Option(None, "--ray", is_flag=False, flag_value="auto", metavar="[ADDRESS]",
                                      help="Score the retrained version on a Ray cluster."),
    as_json: bool = JsonOption,
    root: Optional[Path] = RootOption,
):
    """Label examples and train the next version (logistic regression on the stored vectors)."""
    def go(wh):
        from concepts import registry

        c = None
        if remove:
            c = registry.remove_labels(wh, name, remove, created_by="cli", retrain=not no_train and not (positive or negative),
                                       materialize=not ray)
        if positive or negative:
            c = registry.add_labels(wh, name, positive=positive, negative=negative, created_by="cli", retrain=not no_train,
                                    materialize=not ray)
        if c is None:
            raise registry.ConceptError("give --positive, --negative or --remove")
        if ray and not no_train:
            wh.rescore_concepts([name], **_engine(ray))
            c = registry.get(wh, name)
        return c

    _print_concept(_run(root, go), as_json)


RayOption = typer.Option(None, "--ray", is_flag=False, flag_value="auto", metavar="[ADDRESS]",
                         help="Score on a Ray cluster (ADDRESS, default $RAY_ADDRESS or the local `ray start` one).")


def _engine(ray: Optional[str]) -> dict:
    return {"engine": "ray", "ray_address": None if ray == "auto" else ray} if ray else {}


@concept_app.command("rescore")
def rescore(names: Optional[List[str]] = typer.Argument(None, help="Concepts (default: all)."),
            ray: Optional[str] = RayOption, root: Optional[Path] = RootOption):
    """Score every vector again for the concepts' newest versions and rewrite their score caches."""
    def go(wh):
        return wh.rescore_concepts(names or None, **_engine(ray))

    done = _run(root, go)
    typer.echo(f"rescored {len(done)} concept version(s)" + (": " + ", ".join(f"{c} v{v}" for c, v in done)
                                                            if done else ""))


@concept_app.command("threshold")
def threshold(name: str, value: float, root: Optional[Path] = RootOption):
    """Set the threshold (a new version with the same head)."""
    from concepts import registry

    _print_concept(_run(root, lambda wh: registry.set_threshold(wh, name, value)), False)


@concept_app.command("recalibrate")
def recalibrate(names: Optional[List[str]] = typer.Argument(None, help="Concepts (default: all)."),
                keep_user: bool = typer.Option(True, "--keep-user/--all-thresholds",
                                               help="With no names: skip concepts whose threshold the user set."),
                root: Optional[Path] = RootOption):
    """Set the default threshold from today's scores and labels (a new version where it changes)."""
    from concepts import registry

    def go(wh):
        todo = names or [c.name for c in registry.list_concepts(wh)
                         if not (keep_user and c.threshold_source == registry.USER)]
        return [(registry.get(wh, n).latest_version, registry.recalibrate(wh, n)) for n in todo]

    for before, c in _run(root, go):
        what = "unchanged" if c.latest_version == before else "new version"
        typer.echo(f"{c.name} v{c.latest_version} ({what}): threshold {c.threshold:.4g} ({c.threshold_source})")


@concept_app.command("update")
def update(
    name: str,
    prompt: Optional[List[str]] = typer.Option(None, "--prompt", "-p"),
    negative: Optional[List[str]] = typer.Option(None, "--negative", "-n"),
    description: Optional[str] = typer.Option(None, "--description", "-d"),
    root: Optional[Path] = RootOption,
):
    """Replace the prompts (a new version) or the description."""
    from concepts import registry

    _print_concept(_run(root, lambda wh: registry.update(
        wh, name, prompts=prompt or None, negative_prompts=negative or None, description=description)), False)


@concept_app.command("list")
def list_(as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """All concepts with their newest version and threshold."""
    from concepts import registry

    rows = [_summary(c) for c in _run(root, registry.list_concepts)]
    _table(rows, ["name", "latest_version", "kind", "encoder", "threshold", "threshold_source", "parent", "labels",
                  "prompts"], as_json)


@concept_app.command("show")
def show(name: str, as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """One concept: definition, newest version's training summary (what a text head maps to)."""
    from concepts import registry

    from concepts import memberships, quality

    def go(wh):
        return registry.get(wh, name), registry.version(wh, name), memberships.of(wh, name)

    c, v, classes = _run(root, go)
    d = {**c.to_dict(), "version": v.to_dict(), "classes": classes}
    d["version"]["training"].pop("classes", None)  # shown once, as "classes"
    typer.echo(json.dumps(d, indent=2, default=str))
    q = quality.line(c.name)
    if q and not as_json:
        typer.echo(q, err=True)


@concept_app.command("classes")
def classes(name: str,
            pin: Optional[List[str]] = typer.Option(None, "--pin", help="Class to count fully (membership 1); repeatable."),
            drop: Optional[List[str]] = typer.Option(None, "--drop", help="Class to leave out (membership 0); repeatable."),
            reset: Optional[List[str]] = typer.Option(None, "--reset", help="Undo a pin or drop; repeatable."),
            version: Optional[int] = typer.Option(None, "--version", help="Show this version's map."),
            as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """The classifier classes that make up a concept (ConSE memberships); --pin/--drop make a new version."""
    from concepts import memberships, registry

    def go(wh):
        before = registry.get(wh, name).latest_version
        if pin or drop or reset:
            registry.edit_classes(wh, name, pin=pin or (), drop=drop or (), reset=reset or ())
        return before, registry.get(wh, name), memberships.of(wh, name, version)

    before, c, rows = _run(root, go)
    if (pin or drop or reset) and not as_json:
        typer.echo(f"{name}: version {before} -> {c.latest_version}", err=True)
    _table(rows, ["class", "membership", "edit"], as_json)


@concept_app.command("versions")
def versions(name: str, as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """Every version: head kind, vector column, threshold, when."""
    from concepts import registry

    rows = [v.to_dict() for v in _run(root, lambda wh: registry.versions(wh, name))]
    for r in rows:
        r["summary"] = ", ".join(f"{k}={r['training'][k]}" for k in ("positives", "negatives", "cv_auroc", "change")
                                 if k in r["training"])
    _table(rows, ["version", "kind", "encoder", "vector_column", "link", "threshold", "threshold_source", "prompts",
                  "summary",
                  "created_dt"], as_json)


@concept_app.command("candidates")
def candidates(name: str, n: int = typer.Option(20, "--n", "-n"), as_json: bool = JsonOption,
               root: Optional[Path] = RootOption):
    """The unlabeled assets the concept is least sure about: label these next."""
    from concepts import active

    rows = _run(root, lambda wh: active.candidates(wh, name, n))
    _table(rows, ["coactive_image_id", "path", "prob"], as_json)


@concept_app.command("estimate")
def estimate(name: str, as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """How many assets are above threshold, and the expected number of positives with a 95% interval."""
    from concepts import active

    e = _run(root, lambda wh: active.estimate(wh, name))
    if as_json:
        typer.echo(json.dumps(e, indent=2))
    else:
        typer.echo(f"{name} v{e['version']}: {e['count']} of {e['scored']} scored assets at or above "
                   f"{e['threshold']}; expected positives {e['expected_positives']:.1f} "
                   f"(95% interval {e['ci95_low']:.1f} - {e['ci95_high']:.1f})")


@concept_app.command("delete")
def delete(name: str, root: Optional[Path] = RootOption):
    """Delete a concept, its versions, labels and cached scores."""
    from concepts import registry

    _run(root, lambda wh: registry.delete(wh, name))
    typer.echo(f"deleted {name}")


@concepts_app.command("install-defaults")
def install_defaults(encoder: Optional[str] = typer.Option(None, "--encoder", "-e"),
                     root: Optional[Path] = RootOption):
    """Install the starter moderation concepts (handgun, rifle, knife, syringe, pills, alcohol, ...)."""
    from concepts import library

    created = _run(root, lambda wh: library.install_defaults(wh, encoder=encoder))
    typer.echo(f"installed {len(created)} concept(s): {', '.join(created) or 'all were present'}")


@concepts_app.command("library")
def library_list(as_json: bool = JsonOption):
    """The built-in concepts and moderation categories with their measured quality on the dev set."""
    from concepts import catalogue, quality

    rows = []
    for e in catalogue.BY_NAME.values():
        q = (quality.load()["concepts"].get(e.name) if e.library else None) or quality.category(e.name) or {}
        rows.append({"name": e.name, "in": "+".join(k for k, on in (("library", e.library),
                                                                     ("moderation", e.category)) if on),
                     "status": q.get("status"), "auroc": q.get("auroc"), "tpr": q.get("tpr"), "fpr": q.get("fpr"),
                     "held_out_pos": q.get("n_pos"), "note": q.get("note")})
    _table(rows, ["name", "in", "status", "auroc", "tpr", "fpr", "held_out_pos", "note"], as_json)
    if not as_json:
        d = quality.load()
        typer.echo(f"measured on {d.get('devset')} ({d.get('encoder')}): TPR/FPR of `c = 1` at the default threshold. "
                   f"Anything not 'works': {quality.ADVICE}.", err=True)


@concepts_app.command("list")
def concepts_list(as_json: bool = JsonOption, root: Optional[Path] = RootOption):
    """All concepts (same as `pixql concept list`)."""
    list_(as_json=as_json, root=root)


@app.command("classify")
def classify(
    paths: List[str] = typer.Argument(..., help="Files, directories or globs to classify."),
    concept: Optional[List[str]] = typer.Option(None, "--concept", "-c", help="Only these concepts (repeatable)."),
    add: bool = typer.Option(False, "--add", help="Also ingest the files into --dataset."),
    dataset: str = typer.Option("classified", "--dataset", "-d"),
    as_json: bool = JsonOption,
    root: Optional[Path] = RootOption,
):
    """Classify files against the concept library without adding them (Coactive's Classification API)."""
    from concepts import classify as cl

    res = _run(root, lambda wh: cl.classify(wh, paths, concepts=concept or None, add=add, dataset=dataset))
    if as_json:
        typer.echo(json.dumps(res, indent=2))
        return
    names = concept or sorted({n for r in res for n in r["probabilities"]})
    rows = []
    for r in res:
        row = {"image": r["path"], **{n: r["probabilities"].get(n) for n in names}}
        row["classification"] = r["error"] or json.dumps(r["classification"])
        rows.append(row)
    _table(rows, ["image", *names, "classification"], False)
