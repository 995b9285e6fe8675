"""Turns what the user names (directories, globs, files, `@lists`) into files to ingest,
and finds each file's user metadata (a JSON sidecar or a CSV/JSONL manifest).

Local paths and object URIs (`s3://`, `gs://`, `az://`, read through
`ingest.objects`) follow the same rules: a URI ending in '/' (or naming a
prefix) is walked like a directory, a URI with wildcards is a glob over keys,
and a source's `path` is a `pathlib.Path` or an `objects.ObjectURI`.
"""
from __future__ import annotations

import csv
import glob
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from warehouse.errors import Invalid

from . import objects
from .objects import ObjectURI, location

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v"}
# Files that describe other files; never assets themselves.
SIDECAR_EXTS = {".json", ".jsonl", ".csv"}
GLOB_CHARS = set("*?[")
OUTSIDE = "outside the directories this server reads"


class FileAccess:
    """How ingest reaches the files a user names: the hook a server replaces with its intake's checks.

    This default reads any file the process can (the CLI and the SDK).  A server
    passes a subclass whose `allows` bounds what directories, globs and @lists
    expand to, and whose `open` checks the file it actually opened (symlinks
    swapped in after a request was accepted included), raising PermissionError.
    """

    def allows(self, path: Path | ObjectURI) -> bool:
        return True

    def open(self, path: Path | ObjectURI) -> BinaryIO:
        return objects.open_input(path)


PLAIN = FileAccess()


@dataclass
class Source:
    path: Path | ObjectURI
    metadata: dict = field(default_factory=dict)
    # Set when the source itself is unusable (missing, unsupported): it becomes an
    # ingest_errors row without being opened.
    problem: str | None = None


def _walk(directory: Path):
    for p in sorted(directory.rglob("*")):
        if p.is_dir() or any(part.startswith(".") for part in p.relative_to(directory).parts):
            continue
        if p.suffix.lower() in SIDECAR_EXTS:
            continue
        yield p


def _read_list(list_file: Path | ObjectURI, files: FileAccess):
    base = list_file.parent
    with files.open(list_file) as fh:
        text = io.TextIOWrapper(fh).read()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = location(line)
            yield p if p.is_absolute() else base / p


def _object_problem(u: ObjectURI) -> str | None:
    """Why an object named explicitly cannot be a source (missing, denied), or None."""
    try:
        return None if u.is_file() else "no such object"
    except OSError as e:
        return str(e)


def expand(paths, manifest: str | Path | None = None, files: FileAccess = PLAIN) -> list[Source]:
    """Expand user arguments into sources, de-duplicated by resolved path, in a stable order.

    A directory (or an object prefix) is walked recursively; an argument with glob
    characters is a glob (`**` recursive); `@file` reads one path or URI per line;
    anything else is a file.  A missing path or object becomes a source with a
    problem rather than an exception, as does an object the credentials may not
    read.  Where `files` does not allow a path, it becomes a source with the
    problem `OUTSIDE` under the name the user gave (never walked, never opened).
    """
    if isinstance(paths, (str, Path, ObjectURI)):
        paths = [paths]
    manifest_meta = load_manifest(manifest) if manifest else {}
    out: list[Source] = []
    seen: set = set()
    # Objects seen in a listing: their sidecars are looked up there, not with one HEAD each.
    listed: set[ObjectURI] = set()
    via_listing: set[ObjectURI] = set()

    def outside(p):
        src = Source(p.absolute(), problem=OUTSIDE)
        if src.path not in seen:
            seen.add(src.path)
            out.append(src)

    def add(p, explicit: bool, checked: bool = False):
        rp = p.resolve()
        if not files.allows(rp):
            return outside(p)
        if rp in seen:
            return
        seen.add(rp)
        src = Source(rp, metadata=dict(manifest_meta.get(rp, {})))
        if isinstance(rp, ObjectURI):
            src.problem = None if checked else _object_problem(rp)
        elif not rp.exists():
            src.problem = "no such file or directory"
        if src.problem is None:
            ext = rp.suffix.lower()
            if ext not in IMAGE_EXTS | VIDEO_EXTS and not explicit:
                src.problem = f"unsupported file type '{ext or '(none)'}'"
        out.append(src)

    def walk_objects(prefix: ObjectURI):
        try:
            every = objects.files(prefix)
        except OSError as e:  # a bucket that is missing or may not be listed
            out.append(Source(prefix, problem=str(e)))
            return []
        listed.update(every)
        return every

    def add_listed(found, prefix: ObjectURI):
        for u in found:
            rel = u.key[len(prefix.key):].split("/") if u.key.startswith(prefix.key) else u.parts
            if any(part.startswith(".") for part in rel) or u.suffix.lower() in SIDECAR_EXTS:
                continue
            via_listing.add(u)
            add(u, explicit=False, checked=True)

    for arg in paths:
        s = str(arg)
        if s.startswith("@"):
            lst = location(s[1:])
            if not files.allows(lst.resolve()):
                outside(lst)
                continue
            for p in _read_list(lst, files):
                add(p, explicit=True)
        elif GLOB_CHARS & set(s):
            if objects.is_uri(s):
                base = objects.glob_prefix(s)
                if not files.allows(base):
                    outside(location(s))
                    continue
                add_listed(objects.match(s, walk_objects(base)), base)
                continue
            # The directory before the first wildcard is checked first, so a glob
            # outside the allowed roots says nothing about what it would match.
            prefix = s[:min(s.index(c) for c in GLOB_CHARS & set(s))]
            base = Path(os.path.dirname(prefix) or ".")
            if not files.allows(base.resolve()):
                outside(Path(s))
                continue
            for m in sorted(glob.glob(s, recursive=True)):
                mp = Path(m)
                if mp.is_file() and mp.suffix.lower() not in SIDECAR_EXTS:
                    add(mp, explicit=False)
        elif objects.is_uri(s):
            u = location(s)
            if not files.allows(u):
                outside(u)
                continue
            try:
                kind = "dir" if u.is_dir() else "file"
            except OSError as e:
                kind = str(e)
            if kind == "dir":
                prefix = u if u.key == "" or u.key.endswith("/") else ObjectURI(u.scheme, u.bucket, u.key + "/")
                add_listed(walk_objects(prefix), prefix)
            else:
                add(u, explicit=True)
        else:
            p = Path(s)
            if not files.allows(p.resolve()):
                outside(p)
            elif p.is_dir():
                for f in _walk(p):
                    add(f, explicit=False)
            else:
                add(p, explicit=True)
    for src in out:
        if src.problem is None:
            src.metadata.update(sidecar_metadata(src.path, files, listed if src.path in via_listing else None))
    return out


def sidecar_metadata(path, files: FileAccess = PLAIN, listed: set | None = None) -> dict:
    """`photo.jpg.json` or `photo.json` beside the file, if it holds a JSON object.

    `listed`: the objects of the listing `path` came from, so an object's sidecar
    costs no request unless it exists.
    """
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        try:
            there = cand in listed if listed is not None else cand.is_file()
        except OSError:  # a sidecar we may not read is no sidecar
            there = False
        if there:
            try:
                with files.open(cand) as fh:
                    data = json.loads(fh.read())
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {"value": data}
    return {}


def load_manifest(manifest) -> dict:
    """Read a CSV or JSONL manifest (a local file or an object) with a `path` column; other
    columns are metadata.  Relative paths are relative to the manifest's directory.
    """
    mpath = location(manifest)
    base = mpath.parent
    try:
        text = objects.read_bytes(mpath)[0].decode("utf-8-sig")
    except OSError as e:
        raise Invalid(f"cannot read manifest {manifest}: {e}") from None
    rows: list[dict] = []
    if mpath.suffix.lower() == ".csv":
        rows = list(csv.DictReader(io.StringIO(text, newline="")))
    else:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise Invalid(f"{mpath}:{n}: invalid JSON line: {e}") from None
    out = {}
    for n, row in enumerate(rows, 1):
        if "path" not in row:
            raise Invalid(f"{mpath}: row {n} has no 'path' column")
        p = location(row.pop("path"))
        out[(p if p.is_absolute() else base / p).resolve()] = row
    return out
