"""Callback delivery for asynchronous moderation: signed POSTs, retried with backoff, never twice.

Each delivery POSTs the task's result as JSON to its `callback_url` with

    X-PixQL-Signature: sha256=<hex HMAC-SHA256 of the raw body, keyed by the webhook secret>
    X-PixQL-Delivery:  <id, the same on every retry of one delivery; new on a requested redelivery>
    X-PixQL-Task:      <task id>
    X-PixQL-Event:     moderation.completed

Receivers verify with `verify(secret, body, header)` (or the same three lines of
hmac in any language).  The secret is `PIXQL_WEBHOOK_SECRET` if set, otherwise
a random one generated once and kept in `catalog.meta` (`pixql webhook-secret`
or `GET /api/v1/moderation/webhook-secret` with admin scope shows it).

Callbacks go only to addresses the intake's filter allows (`api.intake`: no
loopback, private or link-local address unless `--allow-url-network` allows
it), connecting to the address it vetted; a refused address fails the delivery
at once, without retries.

A 2xx ends a delivery; anything else (or no answer) is retried after
`base_delay * factor**(attempt-1)` seconds, up to `max_attempts`.  Every attempt
is a row of `catalog.webhook_deliveries`; the task's `delivery_status` goes
pending -> retrying -> delivered | failed.  After a success nothing sends the
result again unless someone asks (`redeliver`); a task is never being
delivered by two deliveries at once.

A delivery is a `webhook` job of the job runner (warehouse/jobs.py): one attempt
per run, and a failed attempt puts the job back in the queue until its backoff
has passed, so waiting holds no thread.  The attempt number is counted from
`catalog.webhook_deliveries`, so a delivery cut short by a crash resumes at the
right attempt with the same delivery id.  Tasks whose delivery never became a
job (older servers) are picked up by `resume_pending()`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from dataclasses import dataclass
from typing import Callable

import httpx

from warehouse import catalog
from warehouse.errors import Conflict, Invalid, NotFound

log = logging.getLogger("pixql.webhooks")

SIGNATURE_HEADER = "X-PixQL-Signature"
DELIVERY_HEADER = "X-PixQL-Delivery"
TASK_HEADER = "X-PixQL-Task"
EVENT_HEADER = "X-PixQL-Event"
EVENT = "moderation.completed"
SECRET_KEY = "webhook_secret"


def sign(secret: str | bytes, body: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: str | bytes, body: bytes, header: str | None) -> bool:
    return bool(header) and hmac.compare_digest(sign(secret, body), header.strip())


def body_of(result: dict) -> bytes:
    """The exact bytes sent (and signed): stable, so every retry carries the same signature."""
    return json.dumps(result, sort_keys=True, separators=(",", ":"), default=str).encode()


def webhook_secret(con, write_lock=None) -> str:
    from warehouse.settings import current

    env = current().webhook_secret
    if env:
        return env
    row = con.execute("SELECT value FROM catalog.meta WHERE key = ?", [SECRET_KEY]).fetchone()
    if row:
        return row[0]
    lock = write_lock or threading.Lock()
    with lock:
        con.execute("INSERT INTO catalog.meta (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING", [SECRET_KEY, secrets.token_hex(32)])
    return con.execute("SELECT value FROM catalog.meta WHERE key = ?", [SECRET_KEY]).fetchone()[0]


@dataclass
class RetryPolicy:
    max_attempts: int = 6
    base_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    timeout: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return min(self.base_delay * self.factor ** (attempt - 1), self.max_delay)


class AlreadyDelivering(Conflict):
    pass


class WebhookSender:
    """Delivers task results to callbacks as `webhook` jobs; state lives in the catalog."""

    KIND = "webhook"

    def __init__(self, cursor_factory, write_lock, retry: RetryPolicy | None = None, secret: str | None = None,
                 runner=None, post: Callable[..., httpx.Response] | None = None):
        """`post(url, content, headers, timeout)` sends one attempt; by default through an address
        filter that allows public addresses only (`api.intake.Downloader.post`)."""
        from warehouse.jobs import JobRunner

        if post is None:
            from api.intake import AddressFilter, Downloader

            post = Downloader(AddressFilter(), max_bytes=1 << 20).post
        self._post = post
        self._cursor = cursor_factory
        self._lock = write_lock
        self.retry = retry or RetryPolicy()
        self.secret = secret or webhook_secret(cursor_factory(), write_lock)
        self._submit_lock = threading.Lock()
        self._own_runner = runner is None
        self.runner = runner or JobRunner(cursor_factory, write_lock, {"webhook": 4}).start()
        self.runner.register(self.KIND, self._attempt, lane="webhook")

    # -- public ----------------------------------------------------------------------------
    def submit(self, task_id: str, redeliver: bool = False) -> str | None:
        """Start delivering a finished task's result; returns the delivery id, or None when the
        task was already delivered (and this is not a requested redelivery)."""
        row = self._cursor().execute(
            "SELECT callback_url, result, delivery_status FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]
        ).fetchone()
        if row is None:
            raise NotFound(f"unknown moderation task {task_id!r}")
        url, result, status = row
        if not url:
            raise Invalid(f"task {task_id} has no callback_url")
        if result is None:
            raise Invalid(f"task {task_id} has no result yet")
        if status == "delivered" and not redeliver:
            return None
        from warehouse import jobs
        from warehouse.transaction import transaction

        with self._submit_lock:
            if self._current(task_id, active=True):
                raise AlreadyDelivering(f"task {task_id} is being delivered right now")
            delivery_id = uuid.uuid4().hex
            con = self._cursor()
            with transaction(con, self._lock):
                jobs.insert(con, self.KIND, {"task_id": task_id, "url": url, "delivery_id": delivery_id},
                            job_id=delivery_id)
                con.execute("UPDATE catalog.moderation_tasks SET delivery_status = 'pending' WHERE task_id = ?",
                            [task_id])
            self.runner.enqueue(delivery_id, self.KIND)
        return delivery_id

    def redeliver(self, task_id: str) -> str:
        """Send a finished task's result again because someone asked (a new delivery id)."""
        return self.submit(task_id, redeliver=True)

    def wait(self, task_id: str, timeout: float | None = None) -> str | None:
        """Block until the task's current delivery ends; return its delivery_status."""
        job_id = self._current(task_id)
        if job_id is not None:
            self.runner.wait(job_id, timeout)
        row = self._cursor().execute(
            "SELECT delivery_status FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]).fetchone()
        return row[0] if row else None

    def attempts(self, task_id: str) -> list[dict]:
        rows = self._cursor().execute(
            "SELECT delivery_id, attempt, url, status_code, error, ok, sent_dt FROM catalog.webhook_deliveries "
            "WHERE task_id = ? ORDER BY sent_dt, attempt", [task_id]).fetchall()
        keys = ["delivery_id", "attempt", "url", "status_code", "error", "ok", "sent_dt"]
        return [dict(zip(keys, r)) for r in rows]

    def resume_pending(self) -> list[str]:
        """Start deliveries a previous process left unfinished without a job (the runner resumes the rest)."""
        rows = self._cursor().execute(
            "SELECT task_id FROM catalog.moderation_tasks WHERE callback_url IS NOT NULL AND result IS NOT NULL "
            "AND delivery_status IN ('pending', 'retrying')").fetchall()
        started = []
        for (task_id,) in rows:
            try:
                if self.submit(task_id):
                    started.append(task_id)
            except AlreadyDelivering:
                pass
        return started

    def shutdown(self) -> None:
        if self._own_runner:
            self.runner.shutdown(self.retry.timeout + 1)

    # -- internals -------------------------------------------------------------------------
    def _current(self, task_id: str, active: bool = False) -> str | None:
        """The newest delivery job of the task (only a Queued or Running one if `active`)."""
        row = self._cursor().execute(
            "SELECT job_id FROM catalog.jobs WHERE kind = ? AND json_extract_string(params, '$.task_id') = ?"
            + (" AND status IN ('Queued', 'Running')" if active else "") + " ORDER BY created_dt DESC LIMIT 1",
            [self.KIND, task_id]).fetchone()
        return row[0] if row else None

    def _set_status(self, task_id: str, status: str, delivered: bool = False) -> None:
        with self._lock:
            self._cursor().execute(
                "UPDATE catalog.moderation_tasks SET delivery_status = ?, "
                "delivered_dt = CASE WHEN ? THEN ? ELSE delivered_dt END WHERE task_id = ?",
                [status, delivered, catalog.now(), task_id])

    def _record(self, delivery_id, task_id, attempt, url, code, error, ok) -> None:
        with self._lock:
            catalog.insert(self._cursor(), "webhook_deliveries", dict(
                delivery_id=delivery_id, task_id=task_id, attempt=attempt, url=url, status_code=code,
                error=error, ok=ok, sent_dt=catalog.now()))

    def _attempt(self, ctx) -> dict:
        """One attempt of a delivery (the `webhook` job); a failure before the last raises Retry."""
        from warehouse.jobs import Retry

        task_id, url, delivery_id = ctx.params["task_id"], ctx.params["url"], ctx.params["delivery_id"]
        cur = self._cursor()
        done = cur.execute("SELECT count(*), bool_or(ok) FROM catalog.webhook_deliveries WHERE delivery_id = ?",
                           [delivery_id]).fetchone()
        if done[1]:  # delivered before a crash cut the bookkeeping short: never send twice
            self._set_status(task_id, "delivered", delivered=True)
            return {"attempts": done[0]}
        attempt = done[0] + 1
        row = cur.execute("SELECT result FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]).fetchone()
        result = row[0] if row else None
        body = result.encode() if isinstance(result, str) else body_of(result)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self.secret, body),
            DELIVERY_HEADER: delivery_id,
            TASK_HEADER: task_id,
            EVENT_HEADER: EVENT,
            "User-Agent": "pixql-webhooks/1",
        }
        code, error, final = None, None, False
        try:
            resp = self._post(url, content=body, headers=headers, timeout=self.retry.timeout)
            code = resp.status_code
            ok = 200 <= code < 300
            if not ok:
                error = f"HTTP {code}: {resp.text[:200]}"
        except httpx.HTTPError as e:
            ok, error = False, f"{type(e).__name__}: {e}"
        except (PermissionError, ValueError) as e:  # an address the filter refuses: retrying won't help
            ok, error, final = False, f"refused: {e}", True
        self._record(delivery_id, task_id, attempt, url, code, error, ok)
        if ok:
            self._set_status(task_id, "delivered", delivered=True)
            return {"attempts": attempt}
        if attempt >= self.retry.max_attempts or final:
            self._set_status(task_id, "failed")
            log.warning("callback for task %s failed after %d attempts", task_id, attempt)
            raise RuntimeError(f"callback failed after {attempt} attempts: {error}")
        self._set_status(task_id, "retrying")
        raise Retry(self.retry.delay(attempt), {"attempts": attempt})
