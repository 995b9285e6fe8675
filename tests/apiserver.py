"""Run `pixql serve` as a real subprocess on 127.0.0.1 for the API tests and the HTTP benchmark."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

# A query that runs for minutes over no table at all: a cross product of 10^12 rows.
LONG_QUERY = (
    "SELECT sum(a.x * b.y + c.z) AS s FROM (SELECT unnest(range(10000)) AS x) a, "
    "(SELECT unnest(range(10000)) AS y) b, (SELECT unnest(range(10000)) AS z) c"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_token(root: Path, name: str, scope: str) -> str:
    """Create a token directly in the warehouse (the server must not be running on it)."""
    from api.auth import create_token
    from warehouse import Warehouse

    wh = Warehouse.open(root)
    try:
        client_id, secret = create_token(wh.cursor(), name, scope)
    finally:
        wh.close()
    return f"{client_id}:{secret}"


class Server:
    def __init__(self, root: Path, *args: str, log: Path | None = None):
        self.root = Path(root)
        self.args = list(args)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or (self.root.parent / f"serve-{self.port}.log")
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> "Server":
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "ab")
        cmd = [sys.executable, "-c", "from api.cli import main; main()", "serve", "--root", str(self.root),
               "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", *self.args]
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"pixql serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/ready", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"pixql serve not ready after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except OSError:
            return ""

    def stop(self, timeout: float = 30.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case, no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._log.close()

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)


def poll(http: httpx.Client, query_id: str, timeout: float = 60.0, until=("Complete", "Error", "Stopped")) -> dict:
    """The tutorial's loop: GET until the status is final (short sleeps, no long poll)."""
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/api/v1/queries/{query_id}")
        r.raise_for_status()
        body = r.json()
        if body["status"] in until:
            return body
        if time.monotonic() > deadline:
            raise TimeoutError(f"query {query_id} still {body['status']} after {timeout} s")
        time.sleep(0.05)


def start_photo_server(base: Path, photo_dir: Path, *args: str) -> Server:
    """A server whose warehouse holds the bundled photos, ingested over HTTP as dataset 'photos'.

    `srv.tokens` has one token per scope (read, write, admin).
    """
    root = Path(base) / "wh"
    tokens = {scope: make_token(root, f"test-{scope}", scope) for scope in ("read", "write", "admin")}
    srv = Server(root, "--time-limit", "3", "--query-workers", "2", "--max-queued", "500",
                 "--row-cap", "1000", *args).start()
    srv.tokens = tokens
    with srv.client(tokens["write"]) as http:
        r = http.post("/api/v1/ingestion", json={"dataset": "photos", "paths": [str(photo_dir)]})
        if r.status_code != 202:
            srv.stop()
            raise RuntimeError(f"ingest over HTTP failed: {r.status_code} {r.text}")
        job = r.json()
        deadline = time.monotonic() + 300
        while job["status"] not in ("Complete", "Error"):
            if time.monotonic() > deadline:
                srv.stop()
                raise TimeoutError("ingest over HTTP did not finish")
            time.sleep(0.2)
            job = http.get(f"/api/v1/ingestion/{job['job_id']}").json()
        if job["status"] != "Complete":
            srv.stop()
            raise RuntimeError(f"ingest over HTTP failed: {job}")
    srv.ingest_job = job
    return srv
