"""Moderation commands: moderate, queue, override, feedback, categories, and `policy create|show|list|delete`.

They work on the local warehouse, like `pixql ingest`; while `pixql serve` holds
it, use the HTTP API (`POST /api/v1/moderate`, ...) instead.
"""
from __future__ import annotations

import getpass
import json
import re
from pathlib import Path
from typing import List, Optional

import typer

from .app import RootOption, app, fail, open_warehouse

policy_app = typer.Typer(help="Moderation policies: create (new version if the name exists), show, list, delete.",
                         no_args_is_help=True)
app.add_typer(policy_app, name="policy")

STATUS_COLOURS = {"approved": typer.colors.GREEN, "review": typer.colors.YELLOW, "rejected": typer.colors.RED,
                  "error": typer.colors.MAGENTA, "pending": typer.colors.BLUE}


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _writable(root):
    return open_warehouse(root, busy_hint="use the HTTP API (POST /api/v1/moderate, "
                          "PUT /api/v1/assets/{id}/moderation, ...) instead")


def _user(user: str | None) -> str:
    if user:
        return user
    try:
        return getpass.getuser()
    except Exception:  # no login name in some containers
        return "cli"


def _dump(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


@app.command()
def moderate(
    paths: List[str] = typer.Argument(..., help="Image or video files, or coactive_image_id / coactive_video_id values."),
    policy: Optional[str] = typer.Option(None, "--policy", "-p", help="Policy name, or name:category:value... overrides."),
    dataset: str = typer.Option("moderation", "--dataset", "-d", help="Dataset new files are ingested into."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ignore cached results."),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    root: Optional[Path] = RootOption,
):
    """Moderate files (or stored assets/videos) under a policy: approved, rejected or review, and why."""
    from concepts.moderation import Item, Moderator
    from concepts.policy import PolicyNotFound

    wh = _writable(root)
    try:
        items = []
        for p in paths:
            if not UUID.match(p.lower()):  # not an id: a file, and a missing one says so
                items.append(Item(path=p, id=p))
            elif wh.cursor().execute("SELECT 1 FROM catalog.videos WHERE coactive_video_id = ?", [p]).fetchone():
                items.append(Item(coactive_video_id=p, id=p))
            else:
                items.append(Item(coactive_image_id=p, id=p))
        out = Moderator(wh, dataset=dataset).moderate(items, policy, user=_user(None), use_cache=not no_cache)
    except (ValueError, PolicyNotFound) as e:
        fail(str(e))
    finally:
        wh.close()
    if fmt == "json":
        _dump(out)
        return
    typer.echo(f"policy {out['policy']['spec']} (v{out['policy']['version']})")
    for r in out["results"]:
        status = r["status"]
        line = typer.style(f"{status:9}", fg=STATUS_COLOURS[status]) + f" {r['id']}"
        if status == "error":
            typer.echo(f"{line}: {r['error']}")
            continue
        why = []
        for reason in r["reasons"]:
            if "similar_to" in reason:
                why.append(f"looks like {reason['similar_to']} ({reason['verdict']}, {reason['similarity']:.2f})")
            elif "category" in reason:
                at = f" at {reason['time']:g}s" if "time" in reason else ""
                why.append(f"{reason['category']} {reason['score']:.2f} >= {reason['threshold']:g}"
                           f"{' - review band' if reason['action'] == 'review' else ''}{at}")
        if r["decided_by"] == "user":
            why.insert(0, f"manual override by {r['override']['user']}: {r['override']['comment'] or '-'} "
                          f"(model says {r['model_status']})")
        ident = r.get("coactive_image_id") or r.get("coactive_video_id")
        typer.echo(f"{line} [{ident}]{' (cached)' if r['cached'] else ''}" + (": " + "; ".join(why) if why else ""))
    counts = ", ".join(f"{k} {v}" for k, v in out["counts"].items() if v)
    typer.echo(counts)
    if out["unscored_categories"]:
        typer.echo(f"not scored (no head yet): {', '.join(out['unscored_categories'])}", err=True)
    if out.get("unreliable_categories"):
        typer.echo(f"scored but unmeasured or at chance (label examples): {', '.join(out['unreliable_categories'])}",
                   err=True)


@app.command()
def queue(
    status: Optional[str] = typer.Option(None, "--status", "-s", help="approved | rejected | review"),
    dataset: Optional[str] = typer.Option(None, "--dataset", "-d"),
    limit: int = typer.Option(50, "--limit", "-n"),
    offset: int = typer.Option(0, "--offset"),
    fmt: str = typer.Option("table", "--format", "-f", help="table | json"),
    root: Optional[Path] = RootOption,
):
    """The moderation queue: assets and videos by current status, newest decision first."""
    from concepts.moderation import Moderator

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        out = Moderator(wh).queue(status, offset, limit, dataset)
    except ValueError as e:
        fail(str(e))
    finally:
        wh.close()
    if fmt == "json":
        _dump(out)
        return
    for it in out["items"]:
        who = f"{it['user']}: {it['comment'] or '-'}" if it["decided_by"] == "user" else f"model, {it['policy']} v{it['policy_version']}"
        typer.echo(typer.style(f"{it['status']:9}", fg=STATUS_COLOURS[it["status"]])
                   + f" {it['subject_id']}  {it['path']}  ({who})")
    more = f"; next: --offset {out['next_offset']}" if out["next_offset"] is not None else ""
    typer.echo(f"{len(out['items'])} of {out['total']}{more}", err=True)


@app.command()
def override(
    asset_id: str = typer.Argument(..., help="coactive_image_id or coactive_video_id"),
    status: str = typer.Option(..., "--status", "-s", help="approved | rejected | review"),
    reason: Optional[str] = typer.Option(None, "--reason", help="Why (kept with the decision)."),
    user: Optional[str] = typer.Option(None, "--user", help="Who decides (default: your login name)."),
    root: Optional[Path] = RootOption,
):
    """A manual decision; it outranks every model decision, including later ones."""
    from concepts.moderation import ModerationNotFound, Moderator

    wh = _writable(root)
    try:
        d = Moderator(wh).override(asset_id, status, reason, _user(user))
    except (ValueError, ModerationNotFound) as e:
        fail(str(e).strip("'\""))
    finally:
        wh.close()
    typer.echo(f"{asset_id}: {d['status']} (by {d['history'][0]['user']})")


@app.command()
def feedback(
    target: str = typer.Argument(..., help="coactive_image_id or an image file"),
    verdict: str = typer.Option(..., "--verdict", "-v", help="block | pass"),
    category: List[str] = typer.Option([], "--category", "-c", help="Also label this category (repeatable)."),
    comment: Optional[str] = typer.Option(None, "--comment"),
    root: Optional[Path] = RootOption,
):
    """Put an image on the block or pass list: later look-alikes get the same verdict."""
    from concepts.moderation import Item, ModerationNotFound, Moderator

    wh = _writable(root)
    try:
        item = Item(path=target) if Path(target).exists() else Item(coactive_image_id=target)
        out = Moderator(wh).feedback(item, verdict, category, _user(None), comment)
    except (ValueError, ModerationNotFound) as e:
        fail(str(e).strip("'\""))
    finally:
        wh.close()
    typer.echo(f"{out['coactive_image_id']} on the {out['list']}")
    for lab in out["labels"]:
        state = f"v{lab['concept_version']}" if lab["trained"] else f"label kept ({lab['detail']})"
        typer.echo(f"  {lab['category']}: {state}")


@app.command()
def categories(root: Optional[Path] = RootOption):
    """The moderation taxonomy and what scores each category (a concept version, or nothing yet)."""
    from concepts import taxonomy

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        for c in taxonomy.report(wh):
            indent = "  " if c["parent"] else ""
            q = c.get("quality") or {}
            measured = (f"AUROC {q['auroc']:.2f}, {q['status']}" if q.get("auroc") is not None
                        else q.get("status", ""))
            typer.echo(f"{indent}{c['category']:<{24 - len(indent)}} {c['state']}"
                       + (f"  [{measured}]" if measured else ""))
    finally:
        wh.close()


@policy_app.command("create")
def policy_create(
    spec: str = typer.Argument(..., help="name:category:value:... e.g. strict:weapons:0.3:alcohol:ignore"),
    description: Optional[str] = typer.Option(None, "--description"),
    root: Optional[Path] = RootOption,
):
    """Store a policy (a new version when the name exists and the settings differ)."""
    from concepts import policy as pol

    try:
        p = pol.parse_spec(spec)
    except ValueError as e:
        fail(str(e))
    p.description = description
    wh = _writable(root)
    try:
        with wh.write_lock:
            saved = pol.save(wh.cursor(), p, _user(None))
    finally:
        wh.close()
    typer.echo(f"policy {saved.name} v{saved.version}: {saved.spec()}")


@policy_app.command("show")
def policy_show(
    name: str = typer.Argument(...),
    version: Optional[int] = typer.Option(None, "--version"),
    root: Optional[Path] = RootOption,
):
    """Every category's effective threshold under a policy, with its review band and similarity."""
    from concepts import policy as pol
    from concepts import taxonomy

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        p = pol.get(wh.cursor(), name, version)
    except pol.PolicyNotFound as e:
        fail(str(e).strip("'\""))
    finally:
        wh.close()
    typer.echo(f"policy {p.name} v{p.version}: {p.spec()}")
    typer.echo(f"review band {p.review_band:g} below each threshold; similar-image match at cosine >= {p.similarity:g}")
    eff = p.thresholds()
    for cat in taxonomy.CATEGORIES:
        indent = "  " if taxonomy.parent(cat) else ""
        value = f"{eff[cat]:g}" if cat in eff else "ignore"
        typer.echo(f"{indent}{cat:<{24 - len(indent)}} {value}")


@policy_app.command("list")
def policy_list(root: Optional[Path] = RootOption):
    from concepts import policy as pol

    wh = open_warehouse(root, read_only=True, must_exist=True)
    try:
        for p in pol.list_all(wh.cursor()):
            typer.echo(f"{p.name:<20} v{p.version:<3} {p.spec()}")
    finally:
        wh.close()


@policy_app.command("delete")
def policy_delete(name: str = typer.Argument(...), root: Optional[Path] = RootOption):
    from concepts import policy as pol

    wh = _writable(root)
    try:
        with wh.write_lock:
            found = pol.delete(wh.cursor(), name)
    finally:
        wh.close()
    if not found:
        fail(f"unknown policy {name!r}")
    typer.echo(f"deleted {name} (its versions stay recorded with past decisions)")
