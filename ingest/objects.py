"""Object storage: the one layer that reads `s3://`, `gs://` and `az://` URIs (and local paths alike).

    loc = location("s3://bucket/photos/a.jpg")     # an ObjectURI (or a pathlib.Path for a local path)
    files(location("s3://bucket/photos/"))           # the objects under a prefix, sorted
    glob("s3://bucket/photos/**/*.jpg")              # a glob over keys (`**` crosses '/')
    with open_input(loc) as fh: ...                  # a buffered, seekable binary file (PyAV reads it too)
    data, mtime = read_bytes(loc, max_bytes)
    fs, path = filesystem("s3://bucket/photos")      # the pyarrow FileSystem, e.g. for Ray Data readers

Everything goes through `pyarrow.fs` (S3, GCS and Azure are built into the
pyarrow wheel), with each cloud's usual credentials: AWS's chain (environment,
`~/.aws/credentials` and `config`, `AWS_PROFILE`, web identity, instance
metadata), Google's application default credentials, Azure's
`AZURE_STORAGE_ACCOUNT_NAME` plus `AZURE_STORAGE_ACCOUNT_KEY` or its default
credential chain.  S3-compatible stores: the `s3_endpoint_url` setting
(`PIXQL_S3_ENDPOINT_URL`), else `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`.

A missing object raises FileNotFoundError, a denied one PermissionError, each
with a short reason naming the URI; callers turn them into `ingest_errors` rows.
An `ObjectURI` quacks like the parts of `pathlib.Path` ingest uses (`name`,
`suffix`, `parent`, `with_name`, `stat()`, `is_file()` ...) so sources, sidecars
and manifests work the same on both.
"""
from __future__ import annotations

import fnmatch
import io
import os
import re
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

SCHEMES = ("s3", "gs", "az")
_URI = re.compile(r"^(s3|gs|az)://([^/?#]+)(/[^?#]*)?$")
# One request per PyAV read would be one HTTP round trip per 32 KB; read ahead instead.
READ_BUFFER = 1 << 20


def is_uri(s) -> bool:
    return isinstance(s, ObjectURI) or bool(isinstance(s, str) and _URI.match(s))


@dataclass(frozen=True)
class ObjectURI:
    """`scheme://bucket/key`: an object, or a prefix when the key is empty or ends in '/'."""

    scheme: str
    bucket: str
    key: str = ""

    @classmethod
    def parse(cls, s: str) -> "ObjectURI":
        m = _URI.match(s)
        if not m:
            raise ValueError(f"not an object URI (s3://, gs:// or az://bucket/key): {s!r}")
        return cls(m.group(1), m.group(2), (m.group(3) or "/")[1:])

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.key}"

    def __truediv__(self, other) -> "ObjectURI":
        return ObjectURI(self.scheme, self.bucket, f"{self.key.rstrip('/')}/{other}".lstrip("/"))

    @property
    def name(self) -> str:
        return self.key.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        n = self.name
        i = n.rfind(".")
        return n[i:] if 0 < i < len(n) - 1 else ""

    @property
    def parent(self) -> "ObjectURI":
        k = self.key.rstrip("/")
        return ObjectURI(self.scheme, self.bucket, k.rsplit("/", 1)[0] + "/" if "/" in k else "")

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(p for p in self.key.split("/") if p)

    def with_name(self, name: str) -> "ObjectURI":
        return ObjectURI(self.scheme, self.bucket, self.parent.key + name)

    def with_suffix(self, suffix: str) -> "ObjectURI":
        n = self.name
        return self.with_name((n[: -len(self.suffix)] if self.suffix else n) + suffix)

    # The pathlib calls ingest makes on a source.
    def resolve(self) -> "ObjectURI":
        return self

    absolute = expanduser = resolve

    def is_absolute(self) -> bool:
        return True

    def stat(self):
        info = _info(self)
        return SimpleNamespace(st_size=info.size, st_mtime=info.mtime.timestamp() if info.mtime else 0.0)

    def exists(self) -> bool:
        return _kind(self) != "missing"

    def is_file(self) -> bool:
        return _kind(self) == "file"

    def is_dir(self) -> bool:
        if self.key == "" or self.key.endswith("/"):
            return True
        return _kind(self) == "dir"

    @property
    def fs_path(self) -> str:
        """The path pyarrow's filesystem of this scheme expects: `bucket/key`."""
        return f"{self.bucket}/{self.key}".rstrip("/")


def location(s) -> "Path | ObjectURI":
    """What a user-named source or a stored asset path is: an ObjectURI for a URI, else a Path."""
    if isinstance(s, (ObjectURI, Path)):
        return s
    s = os.fspath(s)
    return ObjectURI.parse(s) if _URI.match(s) else Path(s)


# -- filesystems -----------------------------------------------------------------------------------
_fs_cache: dict = {}
_fs_lock = threading.Lock()


def s3_endpoint() -> str | None:
    """The S3 endpoint for S3-compatible stores: the setting, else the AWS SDK's variables."""
    from warehouse.settings import current

    return (current().s3_endpoint_url or os.environ.get("AWS_ENDPOINT_URL_S3")
            or os.environ.get("AWS_ENDPOINT_URL") or None)


def _make_fs(scheme: str, bucket: str):
    import pyarrow.fs as pafs

    if scheme == "s3":
        endpoint = s3_endpoint()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        kw = dict(connect_timeout=10, request_timeout=60)
        if endpoint:
            u = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
            kw.update(endpoint_override=u.netloc + u.path.rstrip("/"), scheme=u.scheme or "https",
                      region=region or "us-east-1")
        elif region is None:
            try:  # a bucket lives in one region; asking beats a redirect on every request
                kw["region"] = pafs.resolve_s3_region(bucket)
            except OSError:
                pass
        else:
            kw["region"] = region
        return pafs.S3FileSystem(**kw)
    if scheme == "gs":
        return pafs.GcsFileSystem()
    account = os.environ.get("AZURE_STORAGE_ACCOUNT_NAME")
    if not account:
        raise PermissionError("az:// needs AZURE_STORAGE_ACCOUNT_NAME (and a key or Azure credentials)")
    return pafs.AzureFileSystem(account_name=account, account_key=os.environ.get("AZURE_STORAGE_ACCOUNT_KEY"))


def filesystem(uri) -> tuple:
    """(pyarrow FileSystem, path within it) for an object URI or a local path."""
    loc = location(uri)
    if not isinstance(loc, ObjectURI):
        import pyarrow.fs as pafs

        return pafs.LocalFileSystem(), str(Path(loc).absolute())
    # Keyed by the endpoint too: tests and tools may point the same process at another store.
    key = (loc.scheme, loc.bucket if loc.scheme == "s3" else "", s3_endpoint() if loc.scheme == "s3" else None)
    with _fs_lock:
        fs = _fs_cache.get(key)
        if fs is None:
            fs = _fs_cache[key] = _make_fs(loc.scheme, loc.bucket)
    return fs, loc.fs_path


def _reason(e: OSError, uri) -> OSError:
    """pyarrow's OSError as FileNotFoundError / PermissionError / OSError with a short reason."""
    if isinstance(e, (FileNotFoundError, PermissionError)) and str(uri) in str(e):
        return e
    msg = str(e)
    if isinstance(e, FileNotFoundError) or "NO_SUCH_KEY" in msg or "NoSuchKey" in msg:
        return FileNotFoundError(f"no such object: {uri}")
    if "NO_SUCH_BUCKET" in msg or "NoSuchBucket" in msg:
        return FileNotFoundError(f"no such bucket: {uri}")
    if isinstance(e, PermissionError) or "ACCESS_DENIED" in msg or "AccessDenied" in msg or "403" in msg:
        return PermissionError(f"access denied: {uri}")
    detail = msg.split(": ", 1)[-1] if msg else type(e).__name__
    return OSError(f"cannot read {uri}: {detail}")


def _info(loc: ObjectURI):
    import pyarrow.fs as pafs

    fs, path = filesystem(loc)
    try:
        info = fs.get_file_info(path)
    except OSError as e:
        raise _reason(e, loc) from None
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"no such object: {loc}")
    return info


def _kind(loc: ObjectURI) -> str:
    import pyarrow.fs as pafs

    try:
        info = _info(loc)
    except FileNotFoundError:
        return "missing"
    return "dir" if info.type == pafs.FileType.Directory else "file"


# -- listing -----------------------------------------------------------------------------------------
def files(prefix) -> list[ObjectURI]:
    """Every object under `prefix` (a 'directory': the key ends at a '/'), sorted by key."""
    import pyarrow.fs as pafs

    loc = location(prefix)
    fs, path = filesystem(loc)
    try:
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        raise _reason(e, loc) from None
    out = []
    for info in infos:
        if info.type == pafs.FileType.File:
            bucket, _, key = info.path.partition("/")
            out.append(ObjectURI(loc.scheme, bucket, key))
    return sorted(out, key=lambda u: u.key)


def _glob_regex(pattern: str) -> re.Pattern:
    """Glob over keys: `*`, `?`, `[...]` stay within one '/' segment, `**/` spans any."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:[^/]*/)*", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out, i = out + re.escape("["), i + 1
            else:
                out, i = out + fnmatch.translate(pattern[i:j + 1])[4:-3], j + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def glob_prefix(pattern: str) -> ObjectURI:
    """The literal 'directory' before a glob's first wildcard (what an allow-list checks)."""
    loc = ObjectURI.parse(pattern)
    first = min((loc.key.index(c) for c in "*?[" if c in loc.key), default=len(loc.key))
    return ObjectURI(loc.scheme, loc.bucket, loc.key[:first].rsplit("/", 1)[0] + "/" if "/" in loc.key[:first] else "")


def match(pattern: str, uris) -> list[ObjectURI]:
    """The URIs among `uris` that glob `pattern` matches."""
    loc = ObjectURI.parse(pattern)
    rx = _glob_regex(loc.key)
    return [u for u in uris if (u.scheme, u.bucket) == (loc.scheme, loc.bucket) and rx.match(u.key)]


def glob(pattern: str) -> list[ObjectURI]:
    """Objects whose key matches `pattern` (listing only under its literal prefix), sorted."""
    return match(pattern, files(glob_prefix(pattern)))


# -- reading -----------------------------------------------------------------------------------------
class ObjectFile(io.RawIOBase):
    """A pyarrow input file as a Python raw stream, with the object's `size` and `mtime` (UTC)."""

    def __init__(self, native, uri: ObjectURI, size: int, mtime: datetime | None):
        self._f, self.uri, self.size = native, uri, size
        self.mtime = mtime or datetime.fromtimestamp(0, timezone.utc)
        self.name = str(uri)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        try:
            data = self._f.read(len(b))
        except OSError as e:
            raise _reason(e, self.uri) from None
        b[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        # RawIOBase's own readall asks for 8 KB at a time: one ranged GET each.
        try:
            return self._f.read()
        except OSError as e:
            raise _reason(e, self.uri) from None

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def close(self) -> None:
        if not self.closed:
            self._f.close()
        super().close()


def open_input(loc):
    """A buffered, seekable binary file for an object URI or a local path (the caller closes it)."""
    loc = location(loc)
    if not isinstance(loc, ObjectURI):
        return open(loc, "rb")
    info = _info(loc)
    import pyarrow.fs as pafs

    if info.type != pafs.FileType.File:
        raise IsADirectoryError(f"not an object: {loc}")
    fs, _ = filesystem(loc)
    try:
        native = fs.open_input_file(info.path)
    except OSError as e:
        raise _reason(e, loc) from None
    return io.BufferedReader(ObjectFile(native, loc, info.size, info.mtime), READ_BUFFER)


def fstat(fh) -> tuple[int, float]:
    """(size, mtime as a POSIX time) of a file `open_input` (or plain `open`) returned."""
    raw = getattr(fh, "raw", fh)
    if isinstance(raw, ObjectFile):
        return raw.size, raw.mtime.timestamp()
    st = os.fstat(fh.fileno())
    return st.st_size, st.st_mtime


def read_bytes(loc, max_bytes: int | None = None) -> tuple[bytes, float]:
    """(the bytes, up to max_bytes + 1 of them, and the mtime) of an object or a local file."""
    with open_input(loc) as fh:
        _, mtime = fstat(fh)
        return fh.read(-1 if max_bytes is None else max_bytes + 1), mtime


def under(loc, roots) -> bool:
    """Whether object URI `loc` lies under one of `roots` (object URIs; a bucket alone is all of it).

    Keys with empty, `.` or `..` segments never match: some S3-compatible stores
    normalise them, so `s3://b/allowed/../secret` could reach past the prefix.
    """
    loc = location(loc)
    if not isinstance(loc, ObjectURI):
        return False
    if any(seg in (".", "..") for seg in loc.key.split("/")) or "//" in loc.key:
        return False
    for r in roots:
        r = location(str(r))
        if not isinstance(r, ObjectURI) or (r.scheme, r.bucket) != (loc.scheme, loc.bucket):
            continue
        prefix = r.key.rstrip("/")
        if not prefix or loc.key == prefix or loc.key.startswith(prefix + "/"):
            return True
    return False
