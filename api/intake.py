"""The intake boundary: every client-given path, URL or upload becomes bytes here, and only here.

    intake = Intake.from_settings(settings, warehouse_root)
    intake.check_paths(["/data/photos", "@list.txt"])   # 403 (Refused) outside --path-root
    intake.check_urls(["https://cdn.example/a.jpg"])     # 403 with --no-url-fetch, or for a private address
    data, name = intake.fetch(url)                       # the one downloader (SSRF-safe, size and time caps)
    intake.job_files                                     # the FileAccess ingest jobs open files through

What it owns:

* **Paths** (`PathGuard`): a path is allowed when its real path (symlinks
  resolved) lies under a root.  The check runs when a request names the path
  (so the client gets a 403 at once) and again when a job opens the file: the
  file is opened first, then the real path of the open descriptor
  (`/proc/self/fd/N`) is checked, so a symlink swapped in after the request was
  accepted is refused.  Outside the roots the answer is one fixed message that
  names only what the client sent: whether such a file exists is never told.
* **Object URIs** (`s3://`, `gs://`, `az://`): refused unless under one of the
  server's `object_roots` (`--object-root s3://bucket/prefix/`; none by
  default, whatever `--path-root` says), because the server's cloud
  credentials usually reach far more than its operator means to expose.  A key
  with `.`, `..` or empty segments is never under a root.
* **URLs** (`Downloader`): http(s) only; the host is resolved and every address
  must be public (not loopback, private, CGNAT, link-local incl. the cloud
  metadata address, multicast, reserved, unspecified, or their IPv6 and
  IPv4-mapped forms) unless `--allow-url-network` / `--allow-url-host` allows
  it.  The connection goes to the vetted address (Host header and TLS SNI keep
  the name), so DNS cannot change between check and connect; redirects are
  followed by hand and every hop is vetted again; redirects, bytes (counted
  while streaming) and total seconds are capped.  Webhook callbacks use the
  same filter (`post`).
* **Uploads** (`UploadLimit`): an ASGI middleware that refuses a body whose
  Content-Length is over `--max-upload-mb` before reading it, and counts the
  bytes of a chunked body as they arrive, answering 413 once the count passes
  the limit: nothing past the limit is read, parsed or spooled.

Routes that take paths, URLs or uploads declare it in their OpenAPI extra as
`x-pixql-intake` (see `declares`), which the tests use to prove each is covered.
"""
from __future__ import annotations

import ipaddress
import os
import socket
import stat
import time
from pathlib import Path
from typing import Annotated, BinaryIO, Iterable
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
from fastapi import Depends, HTTPException, Request

from ingest import objects
from ingest.sources import OUTSIDE, FileAccess, expand
from warehouse.errors import Forbidden, Invalid

INTAKE_KEY = "x-pixql-intake"
REDIRECTS = (301, 302, 303, 307, 308)
# Multipart framing (boundaries, part headers) on top of the files themselves.
FORM_OVERHEAD = 64 * 1024


class Refused(Forbidden):
    """A path, URL or address the server will not read (HTTP 403)."""


def declares(*kinds: str, **extra) -> dict:
    """`openapi_extra` of a route that turns client input into bytes: kinds among path, url, upload."""
    return {INTAKE_KEY: list(kinds), **extra}


# -- paths -----------------------------------------------------------------------------------------
def _under(real: str, roots: list[str]) -> bool:
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


class PathGuard(FileAccess):
    """Files under `roots` only, checked on the real path when listed and again when opened;
    objects under `object_roots` only.  `roots=None`: any local file the process can read."""

    def __init__(self, roots: Iterable[os.PathLike | str] | None, object_roots: Iterable[str] = ()):
        self.roots = None if roots is None else [os.path.realpath(r) for r in roots]
        self.object_roots = [str(r) for r in object_roots]

    def allows(self, path) -> bool:
        if objects.is_uri(path) or objects.is_uri(str(path)):
            return objects.under(str(path), self.object_roots)
        return self.roots is None or _under(os.path.realpath(path), self.roots)

    def refuse(self, path) -> Refused:
        return Refused(f"{path}: {OUTSIDE}")

    def open(self, path) -> BinaryIO:
        if not self.allows(path):
            raise self.refuse(path)
        if objects.is_uri(path) or self.roots is None:
            return objects.open_input(path)  # no symlinks in a bucket: the name is what is read
        try:
            # O_NONBLOCK: a FIFO planted under a root must not hang the reader.
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            if not self.allows(path):  # swapped for a link outside meanwhile: the same answer as before
                raise self.refuse(path) from None
            raise
        try:
            real = os.readlink(f"/proc/self/fd/{fd}")
            if not _under(real, self.roots):
                raise self.refuse(path)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Refused(f"{path}: not a regular file")
            os.set_blocking(fd, True)
            return os.fdopen(fd, "rb")
        except BaseException:
            os.close(fd)
            raise


# -- addresses and the downloader ------------------------------------------------------------------
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_v4(ip):
    if ip.version == 6:
        if ip.ipv4_mapped:
            return ip.ipv4_mapped
        if ip.sixtofour:
            return ip.sixtofour
        if ip.teredo:
            return ip.teredo[1]
        if ip in _NAT64:
            return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def public(ip) -> bool:
    """Whether an address is an ordinary public unicast one."""
    inner = _embedded_v4(ip)
    if inner is not None and not public(inner):
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified
                                 or ip.is_loopback or ip.is_link_local or ip.is_private)


class AddressFilter:
    """Public addresses, plus the networks and host names the operator allowed."""

    def __init__(self, networks: Iterable[str] = (), hosts: Iterable[str] = ()):
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self.hosts = {h.lower().rstrip(".") for h in hosts}

    def allowed_ip(self, ip) -> bool:
        inner = _embedded_v4(ip)
        return public(ip) or any(ip in n or (inner is not None and inner in n) for n in self.networks)

    def vet(self, host: str, port: int) -> str:
        """The address to connect to for `host`, or Refused; every address the name has must pass."""
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as e:
            raise FetchError(f"cannot resolve {host!r}: {e}") from None
        addrs = [ipaddress.ip_address(i[4][0].split("%", 1)[0]) for i in infos]
        if host.lower().rstrip(".") not in self.hosts:
            bad = [str(a) for a in addrs if not self.allowed_ip(a)]
            if bad:
                raise Refused(f"{host} resolves to {bad[0]}, a loopback, private, link-local or reserved "
                              "address this server does not fetch (see --allow-url-network)")
        return str(addrs[0])


class FetchError(Invalid):
    """A URL that could not be fetched (bad scheme, HTTP error, too large, too slow)."""


class Downloader:
    """GET (and webhook POST) to vetted addresses only; redirects, size and time capped."""

    def __init__(self, addresses: AddressFilter, max_bytes: int, timeout_s: float = 30.0, max_redirects: int = 5):
        self.addresses, self.max_bytes = addresses, max_bytes
        self.timeout_s, self.max_redirects = timeout_s, max_redirects

    @staticmethod
    def parse(url: str):
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise FetchError(f"unsupported URL scheme or no host in {url!r}: use http(s)://host/...")
        return u

    def vet(self, url: str) -> None:
        """Refused or FetchError now, before anything is sent."""
        u = self.parse(url)
        self.addresses.vet(u.hostname, u.port or (443 if u.scheme == "https" else 80))

    def _pinned(self, url: str):
        """(url with the vetted IP as host, headers, extensions) for one request to `url`."""
        u = self.parse(url)
        port = u.port or (443 if u.scheme == "https" else 80)
        ip = self.addresses.vet(u.hostname, port)
        netloc = f"[{ip}]" if ":" in ip else ip
        if u.port:
            netloc += f":{u.port}"
        target = urlunsplit((u.scheme, netloc, u.path or "/", u.query, ""))
        host = f"[{u.hostname}]" if ":" in u.hostname else u.hostname
        host += f":{u.port}" if u.port else ""
        ext = {"sni_hostname": u.hostname} if u.scheme == "https" else {}
        return target, {"Host": host}, ext

    def _client(self, timeout: float) -> httpx.Client:
        # trust_env=False: no proxy from the environment may carry a request past the checks.
        return httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False)

    def fetch(self, url: str) -> tuple[bytes, str]:
        """The body of `url` and its file name; Refused for a forbidden address on any hop."""
        deadline = time.monotonic() + self.timeout_s
        with self._client(self.timeout_s) as http:
            for _ in range(self.max_redirects + 1):
                target, headers, ext = self._pinned(url)
                left = max(0.1, deadline - time.monotonic())
                try:
                    with http.stream("GET", target, headers=headers, extensions={**ext, "timeout": {
                            "connect": left, "read": left, "write": left, "pool": left}}) as r:
                        if r.status_code in REDIRECTS and r.headers.get("location"):
                            url = urljoin(url, r.headers["location"])
                            continue
                        if r.status_code != 200:
                            raise FetchError(f"download failed: HTTP {r.status_code}")
                        length = r.headers.get("content-length")
                        if length and length.isdigit() and int(length) > self.max_bytes:
                            raise FetchError(f"{url} is larger than {self.max_bytes >> 20} MB")
                        buf = bytearray()
                        for chunk in r.iter_bytes():
                            buf += chunk
                            if len(buf) > self.max_bytes:
                                raise FetchError(f"{url} is larger than {self.max_bytes >> 20} MB")
                            if time.monotonic() > deadline:
                                raise FetchError(f"{url} took longer than {self.timeout_s:g} s")
                        return bytes(buf), urlsplit(url).path.rsplit("/", 1)[-1]
                except httpx.TimeoutException:
                    raise FetchError(f"{url} took longer than {self.timeout_s:g} s") from None
                except httpx.HTTPError as e:
                    raise FetchError(f"download failed: {type(e).__name__}: {e}") from None
        raise FetchError(f"{url}: more than {self.max_redirects} redirects")

    def post(self, url: str, content: bytes, headers: dict, timeout: float) -> httpx.Response:
        """One POST to a vetted address, redirects not followed (webhook callbacks)."""
        target, host, ext = self._pinned(url)
        with self._client(timeout) as http:
            return http.post(target, content=content, headers={**headers, **host}, extensions=ext)


# -- the service ---------------------------------------------------------------------------------
class Intake:
    def __init__(self, roots: list | None, url_fetch: bool, downloader: Downloader, upload_bytes: int,
                 uploads_dir: Path | None = None, object_roots: Iterable[str] = ()):
        object_roots = list(object_roots or [])
        self.client_paths = PathGuard(roots or None, object_roots)
        # Jobs read client paths and the server's own uploads; with no roots, any local file (as the
        # CLI does), but objects only under the object roots either way.
        self.job_files = PathGuard(([*roots, uploads_dir] if uploads_dir else roots) if roots else None,
                                   object_roots)
        self.url_fetch = url_fetch
        self.downloader = downloader
        self.upload_bytes = upload_bytes

    @classmethod
    def from_settings(cls, settings, warehouse_root: Path) -> "Intake":
        upload = int(settings.max_upload_mb * 1024 * 1024)
        addresses = AddressFilter(settings.allow_url_networks, settings.allow_url_hosts)
        downloader = Downloader(addresses, max_bytes=int(settings.max_url_mb * 1024 * 1024),
                                timeout_s=settings.url_time_limit_s, max_redirects=settings.max_url_redirects)
        return cls(settings.path_roots, settings.url_fetch, downloader, upload, Path(warehouse_root) / "uploads",
                   getattr(settings, "object_roots", ()))

    # paths
    def check_paths(self, paths: Iterable[str]) -> list:
        """The sources `paths` expand to; Refused (403) if any is outside the roots."""
        paths = [str(p) for p in paths or []]
        if not paths:
            return []
        sources = expand(paths, files=self.client_paths)
        for src in sources:
            if src.problem == OUTSIDE:
                raise Refused(f"{src.path}: {OUTSIDE}")
        return sources

    def check_file(self, path: str) -> None:
        """Refused (403) for one path outside the roots, without looking at what is there."""
        if not self.client_paths.allows(objects.location(path).expanduser()):
            raise Refused(f"{path}: {OUTSIDE}")

    def open(self, path) -> BinaryIO:
        return self.client_paths.open(path)

    # urls
    def check_urls(self, urls: Iterable[str]) -> dict[str, str]:
        """Refused (403) when fetching is off or any URL's address is forbidden, before anything is
        fetched; returns {url: reason} for URLs that are merely unusable (bad scheme, unknown host)."""
        urls = [u for u in urls or [] if u]
        if urls and not self.url_fetch:
            raise Refused("this server does not fetch URLs (started with --no-url-fetch)")
        problems = {}
        for url in urls:
            try:
                self.downloader.vet(url)
            except FetchError as e:
                problems[url] = str(e)
        return problems

    def fetch(self, url: str) -> tuple[bytes, str]:
        if not self.url_fetch:
            raise Refused("this server does not fetch URLs (started with --no-url-fetch)")
        return self.downloader.fetch(url)

    def check_callback(self, url: str | None) -> None:
        """A webhook callback URL: http(s) and an allowed address (403 otherwise), checked at submission."""
        if url is None:
            return
        try:
            self.downloader.vet(url)
        except FetchError as e:
            raise Invalid(f"callback_url: {e}") from None


def get_intake(request: Request) -> Intake:
    from api.server.deps import get_state

    return get_state(request).intake


IntakeDep = Annotated[Intake, Depends(get_intake)]


# -- uploads -------------------------------------------------------------------------------------
class BodyTooLarge(HTTPException):
    """Raised from `receive` mid-body.  An HTTPException, so FastAPI's body parsing passes it on
    instead of calling it a malformed body; `install` answers it (and `UploadLimit` if it escapes)."""

    def __init__(self, limit: int, received: int):
        super().__init__(413, _too_large(limit))
        self.limit, self.received = limit, received


def _too_large(limit: int) -> str:
    return f"request body exceeds the upload limit of {(limit - FORM_OVERHEAD) / (1024 * 1024):g} MB (--max-upload-mb)"


def _too_large_body(limit: int, received: int) -> dict:
    return {"detail": _too_large(limit), "limit_bytes": limit, "received_bytes": received}


def install(app, limit_bytes) -> None:
    """Add the upload limit to an app: the middleware and the answer to a body cut short."""
    from fastapi.responses import JSONResponse

    async def too_large(request, e: BodyTooLarge):
        return JSONResponse(_too_large_body(e.limit, e.received), status_code=413, headers={"Connection": "close"})

    app.add_exception_handler(BodyTooLarge, too_large)
    app.add_middleware(UploadLimit, limit_bytes=limit_bytes)


class UploadLimit:
    """ASGI middleware: request bodies over the limit get 413 before more than one chunk past it is read."""

    def __init__(self, app, limit_bytes):
        self.app = app
        self.limit_bytes = limit_bytes  # int, or a callable returning one (read per request)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.limit_bytes() if callable(self.limit_bytes) else self.limit_bytes
        limit += FORM_OVERHEAD
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            return await self._refuse(send, limit, 0)
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit, received)
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as e:
            if started:
                raise
            await self._refuse(send, e.limit, e.received)

    @staticmethod
    async def _refuse(send, limit: int, received: int):
        import json

        body = json.dumps(_too_large_body(limit, received)).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
