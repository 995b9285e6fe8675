"""What the server holds for moderation: the `Moderator`, asynchronous tasks and their callbacks.

An asynchronous request becomes a row of `catalog.moderation_tasks` (status
queued -> running -> done | error) and is acknowledged at once; one worker
thread moderates tasks in order (the model already uses every core), stores
the result on the row and hands it to the `WebhookSender`.  The result is also
readable with `GET /api/v1/moderate/tasks/{id}` for callers who poll.

Tuning from the environment: `PIXQL_MODERATION_CACHE_TTL_S` (default 86400),
`PIXQL_MODERATION_DATASET` (default `moderation`), `PIXQL_WEBHOOK_MAX_ATTEMPTS`
(6), `PIXQL_WEBHOOK_BASE_DELAY_S` (1.0; doubled after each failure, capped by
`PIXQL_WEBHOOK_MAX_DELAY_S`, 300).
"""
from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid

from api.webhooks import RetryPolicy, WebhookSender, body_of
from concepts.moderation import Item, ModerationNotFound, Moderator
from warehouse import catalog

log = logging.getLogger("pixql.server.moderation")
_lock = threading.Lock()


def _env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


class ModerationService:
    def __init__(self, state):
        self.state = state
        wh = state.wh
        self.moderator = Moderator(
            wh, dataset=os.environ.get("PIXQL_MODERATION_DATASET", "moderation"),
            cache_ttl_s=_env("PIXQL_MODERATION_CACHE_TTL_S", 86400.0),
            fetch=state.intake.fetch, files=state.intake.job_files)  # URLs and files only through the intake
        self.sender = WebhookSender(wh.cursor, wh.write_lock, RetryPolicy(
            max_attempts=int(_env("PIXQL_WEBHOOK_MAX_ATTEMPTS", 6)),
            base_delay=_env("PIXQL_WEBHOOK_BASE_DELAY_S", 1.0),
            max_delay=_env("PIXQL_WEBHOOK_MAX_DELAY_S", 300.0)), post=state.intake.downloader.post)
        self._queue: "queue.Queue[str]" = queue.Queue()
        self._requeue_unfinished()
        threading.Thread(target=self._worker, name="pixql-moderation", daemon=True).start()
        self.sender.resume_pending()

    # -- tasks ---------------------------------------------------------------------------------
    def submit(self, items: list[dict], policy, callback_url: str, dataset: str | None, user: str | None) -> dict:
        task_id = uuid.uuid4().hex
        request = {"items": items, "policy": policy, "dataset": dataset, "user": user}
        with self.state.wh.write_lock:
            self.state.cursor().execute(
                "INSERT INTO catalog.moderation_tasks (task_id, status, policy, callback_url, request, "
                "delivery_status, created_by, created_dt) VALUES (?, 'queued', ?, ?, ?, 'pending', ?, ?)",
                [task_id, json.dumps(policy) if isinstance(policy, dict) else policy, callback_url,
                 json.dumps(request), user, catalog.now()])
        self.moderator.mark_pending([Item(**it) for it in items], task_id)
        self._queue.put(task_id)
        return self.task(task_id, with_result=False)

    def task(self, task_id: str, with_result: bool = True) -> dict:
        row = self.state.cursor().execute(
            "SELECT task_id, status, policy, callback_url, result, error, delivery_status, delivered_dt, "
            "created_dt, finished_dt, request FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]).fetchone()
        if row is None:
            raise ModerationNotFound(f"unknown moderation task {task_id!r}")
        keys = ["task_id", "status", "policy", "callback_url", "result", "error", "delivery_status",
                "delivered_dt", "created_dt", "finished_dt"]
        out = dict(zip(keys, row))
        out["items"] = len(json.loads(row[10]).get("items", [])) if row[10] else 0
        out["result"] = json.loads(out["result"]) if (with_result and out["result"]) else None
        return out

    def _requeue_unfinished(self) -> None:
        rows = self.state.cursor().execute(
            "SELECT task_id FROM catalog.moderation_tasks WHERE status IN ('queued', 'running') ORDER BY created_dt"
        ).fetchall()
        for (task_id,) in rows:
            self._queue.put(task_id)

    def _set(self, task_id: str, **cols) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.state.wh.write_lock:
            self.state.cursor().execute(f"UPDATE catalog.moderation_tasks SET {sets} WHERE task_id = ?",
                                        [*cols.values(), task_id])

    def _worker(self) -> None:
        while True:
            task_id = self._queue.get()
            try:
                self._run(task_id)
            except Exception:  # the warehouse closed under us at shutdown, or a bug: keep the worker alive
                log.exception("moderation task %s failed", task_id)

    def _run(self, task_id: str) -> None:
        row = self.state.cursor().execute(
            "SELECT request, status, created_dt FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]).fetchone()
        if row is None or row[1] not in ("queued", "running"):
            return
        req = json.loads(row[0])
        self._set(task_id, status="running")
        try:
            items = [Item(**it) for it in req["items"]]
            out = self.moderator.moderate(items, req.get("policy"), user=req.get("user"), task_id=task_id,
                                          dataset=req.get("dataset"))
            status, error = "done", None
        except Exception as e:  # a bad policy or the like: reported to the callback as an error
            out, status, error = None, "error", f"{type(e).__name__}: {e}"
        finished = catalog.now()
        payload = {"task_id": task_id, "status": status, "error": error, "created_dt": row[2],
                   "finished_dt": finished, **(out or {})}
        self._set(task_id, status=status, error=error, finished_dt=finished,
                  result=body_of(payload).decode())
        if self.task(task_id, with_result=False)["callback_url"]:
            self.sender.submit(task_id)


def service(state) -> ModerationService:
    """The state's moderation service, made on first use (the API app knows nothing about it)."""
    svc = getattr(state, "moderation", None)
    if svc is None:
        with _lock:
            svc = getattr(state, "moderation", None)
            if svc is None:
                svc = state.moderation = ModerationService(state)
    return svc
