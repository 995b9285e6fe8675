"""Callback delivery: HMAC signature, retries with backoff, exactly one success, redelivery on request."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from api import webhooks
from api.intake import AddressFilter, Downloader
from warehouse import Warehouse, catalog

# The receivers live on loopback, which callbacks may reach only when allowed (--allow-url-network).
LOOPBACK_OK = Downloader(AddressFilter(networks=["127.0.0.0/8"]), max_bytes=1 << 20).post


class Receiver:
    """A callback server on 127.0.0.1 that answers 500 to the first `fail` requests."""

    def __init__(self, fail: int = 0):
        self.fail = fail
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.requests.append({"headers": dict(self.headers), "body": body})
                    n = len(outer.requests)
                code = 500 if n <= outer.fail else 200
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def wh(fresh_root):
    w = Warehouse.open(fresh_root)
    yield w
    w.close()


def _task(wh, url, result):
    wh.cursor().execute(
        "INSERT INTO catalog.moderation_tasks (task_id, status, callback_url, result, delivery_status, created_dt)"
        " VALUES (?, 'done', ?, ?, 'pending', ?)",
        ["t1", url, webhooks.body_of(result).decode(), catalog.now()])


def test_signature_roundtrip():
    body = webhooks.body_of({"b": 1, "a": [1, 2]})
    header = webhooks.sign("s3cret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert webhooks.verify("s3cret", body, header)
    assert not webhooks.verify("other", body, header)
    assert not webhooks.verify("s3cret", body + b" ", header)
    assert not webhooks.verify("s3cret", body, None)


def test_fails_twice_then_delivered_once_and_signed(wh):
    rx = Receiver(fail=2)
    try:
        result = {"task_id": "t1", "results": [{"status": "rejected"}]}
        _task(wh, rx.url, result)
        sender = webhooks.WebhookSender(wh.cursor, wh.write_lock,
                                        webhooks.RetryPolicy(max_attempts=5, base_delay=0.05), secret="k3y",
                                        post=LOOPBACK_OK)
        delivery = sender.submit("t1")
        assert sender.wait("t1", timeout=30) == "delivered"
        assert len(rx.requests) == 3  # 500, 500, then 200
        for r in rx.requests:
            assert webhooks.verify("k3y", r["body"], r["headers"][webhooks.SIGNATURE_HEADER])
            assert r["headers"][webhooks.DELIVERY_HEADER] == delivery
            assert r["headers"][webhooks.TASK_HEADER] == "t1"
            assert json.loads(r["body"]) == result
        log = sender.attempts("t1")
        assert [(a["attempt"], a["ok"], a["status_code"]) for a in log] == [(1, False, 500), (2, False, 500), (3, True, 200)]
        # after success: neither a new submit nor a restart's resume sends it again
        assert sender.submit("t1") is None
        assert sender.resume_pending() == []
        assert sender.wait("t1", timeout=5) == "delivered"
        assert len(rx.requests) == 3
        # an explicit redelivery does, with a new delivery id and the same signed body
        again = sender.redeliver("t1")
        assert again != delivery
        assert sender.wait("t1", timeout=30) == "delivered"
        assert len(rx.requests) == 4
        assert rx.requests[3]["headers"][webhooks.DELIVERY_HEADER] == again
        assert rx.requests[3]["body"] == rx.requests[2]["body"]
    finally:
        rx.close()


def test_gives_up_after_max_attempts(wh):
    rx = Receiver(fail=100)
    try:
        _task(wh, rx.url, {"x": 1})
        sender = webhooks.WebhookSender(wh.cursor, wh.write_lock,
                                        webhooks.RetryPolicy(max_attempts=3, base_delay=0.01), secret="k", post=LOOPBACK_OK)
        sender.submit("t1")
        assert sender.wait("t1", timeout=30) == "failed"
        assert len(rx.requests) == 3
        assert all(not a["ok"] for a in sender.attempts("t1"))
    finally:
        rx.close()


def test_backoff_is_exponential_and_capped():
    r = webhooks.RetryPolicy(base_delay=0.5, factor=2, max_delay=3)
    assert [r.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3, 3]


def test_secret_is_generated_once_and_kept(wh, monkeypatch):
    monkeypatch.delenv("PIXQL_WEBHOOK_SECRET", raising=False)
    s1 = webhooks.webhook_secret(wh.cursor())
    assert len(s1) == 64 and webhooks.webhook_secret(wh.cursor()) == s1
    monkeypatch.setenv("PIXQL_WEBHOOK_SECRET", "from-env")
    assert webhooks.webhook_secret(wh.cursor()) == "from-env"


def test_resume_pending_finishes_what_a_stopped_server_left(wh):
    rx = Receiver(fail=0)
    try:
        _task(wh, rx.url, {"x": 2})
        wh.cursor().execute("UPDATE catalog.moderation_tasks SET delivery_status = 'retrying'")
        sender = webhooks.WebhookSender(wh.cursor, wh.write_lock, webhooks.RetryPolicy(base_delay=0.01), secret="k", post=LOOPBACK_OK)
        assert sender.resume_pending() == ["t1"]
        assert sender.wait("t1", timeout=30) == "delivered" and len(rx.requests) == 1
        assert sender.resume_pending() == [] and len(rx.requests) == 1
    finally:
        rx.close()


def test_callbacks_to_loopback_are_refused_unless_allowed(wh):
    """The address filter of URL fetching applies to callbacks: no request leaves, no retries."""
    rx = Receiver(fail=0)
    try:
        _task(wh, rx.url, {"x": 3})
        sender = webhooks.WebhookSender(wh.cursor, wh.write_lock,
                                        webhooks.RetryPolicy(max_attempts=4, base_delay=0.01), secret="k")
        sender.submit("t1")
        assert sender.wait("t1", timeout=30) == "failed"
        attempts = sender.attempts("t1")
        assert len(attempts) == 1 and "refused" in attempts[0]["error"] and "127.0.0.1" in attempts[0]["error"]
        assert rx.requests == []
    finally:
        rx.close()
