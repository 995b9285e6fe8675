"""Turns what the user names (directories, globs, files, `@lists`) into files to ingest,
and finds each file's user metadata (a JSON sidecar or a CSV/JSONL manifest).
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

    def allows(self, path: Path) -> bool:
        return True

    def open(self, path: Path) -> BinaryIO:
        return open(path, "rb")


PLAIN = FileAccess()


@dataclass
class Source:
    path: Path
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


def _read_list(list_file: Path, files: FileAccess):
    base = list_file.parent
    with files.open(list_file) as fh:
        text = io.TextIOWrapper(fh).read()
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            p = Path(line)
            yield p if p.is_absolute() else base / p


def expand(paths, manifest: str | Path | None = None, files: FileAccess = PLAIN) -> list[Source]:
    """Expand user arguments into sources, de-duplicated by resolved path, in a stable order.

    A directory is walked recursively; an argument with glob characters is a glob
    (`**` recursive); `@file` reads one path per line; anything else is a file.
    A missing path becomes a source with a problem rather than an exception.
    Where `files` does not allow a path, it becomes a source with the problem
    `OUTSIDE` under the name the user gave (never walked, never opened).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    manifest_meta = load_manifest(manifest) if manifest else {}
    out: list[Source] = []
    seen: set[Path] = set()

    def outside(p: Path):
        src = Source(p.absolute(), problem=OUTSIDE)
        if src.path not in seen:
            seen.add(src.path)
            out.append(src)

    def add(p: Path, explicit: bool):
        rp = p.resolve()
        if not files.allows(rp):
            return outside(p)
        if rp in seen:
            return
        seen.add(rp)
        src = Source(rp, metadata=dict(manifest_meta.get(rp, {})))
        if not rp.exists():
            src.problem = "no such file or directory"
        else:
            ext = rp.suffix.lower()
            if ext not in IMAGE_EXTS | VIDEO_EXTS and not explicit:
                src.problem = f"unsupported file type '{ext or '(none)'}'"
        out.append(src)

    for arg in paths:
        s = str(arg)
        if s.startswith("@"):
            if not files.allows(Path(s[1:]).resolve()):
                outside(Path(s[1:]))
                continue
            for p in _read_list(Path(s[1:]), files):
                add(p, explicit=True)
        elif GLOB_CHARS & set(s):
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
            src.metadata.update(sidecar_metadata(src.path, files))
    return out


def sidecar_metadata(path: Path, files: FileAccess = PLAIN) -> dict:
    """`photo.jpg.json` or `photo.json` beside the file, if it holds a JSON object."""
    for cand in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        if cand.is_file():
            try:
                with files.open(cand) as fh:
                    data = json.loads(fh.read())
            except (OSError, ValueError):
                return {}
            return data if isinstance(data, dict) else {"value": data}
    return {}


def load_manifest(manifest: str | Path) -> dict[Path, dict]:
    """Read a CSV or JSONL manifest with a `path` column; other columns are metadata.

    Relative paths are relative to the manifest's directory.
    """
    mpath = Path(manifest)
    base = mpath.parent
    rows: list[dict] = []
    if mpath.suffix.lower() == ".csv":
        with open(mpath, newline="") as fh:
            rows = list(csv.DictReader(fh))
    else:
        for n, line in enumerate(mpath.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except ValueError as e:
                    raise Invalid(f"{mpath}:{n}: invalid JSON line: {e}") from None
    out = {}
    for n, row in enumerate(rows, 1):
        if "path" not in row:
            raise Invalid(f"{mpath}: row {n} has no 'path' column")
        p = Path(row.pop("path"))
        out[(p if p.is_absolute() else base / p).resolve()] = row
    return out
