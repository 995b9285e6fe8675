"""What the server holds for moderation: the `Moderator`, asynchronous tasks and their callbacks.

An asynchronous request becomes a row of `catalog.moderation_tasks` and a
`moderation` job of the job runner (warehouse/jobs.py, same id), both
committed in one transaction before the 202: a task acknowledged to a client
survives a crash and is run at the next start.  The task row keeps its public
status words (queued -> running -> done | error, the webhook payload's
contract); the job row carries the runner's (Queued, Running, Complete,
Error, Stopped).  The result is stored on the task and handed to the
`WebhookSender` (webhook jobs on the same runner); it is also readable with
`GET /api/v1/moderate/tasks/{id}` for callers who poll.

Tuning comes from `ServerSettings` (`moderation_*`, `webhook_*`; the README's settings table).
"""
from __future__ import annotations

import json
import logging
import threading
import uuid

from api.webhooks import AlreadyDelivering, RetryPolicy, WebhookSender, body_of
from concepts.moderation import Item, ModerationNotFound, Moderator
from warehouse import catalog, jobs
from warehouse.jobs import JobRunner

log = logging.getLogger("pixql.server.moderation")
_lock = threading.Lock()
KIND = "moderation"


class ModerationService:
    def __init__(self, state, runner=None):
        self.state = state
        wh, s = state.wh, state.settings
        self.moderator = Moderator(
            wh, dataset=s.moderation_dataset, cache_ttl_s=s.moderation_cache_ttl_s,
            fetch=state.intake.fetch, files=state.intake.job_files)  # URLs and files only through the intake
        if runner is None:  # a state made without one (tests, embedding): a runner of our own
            runner = JobRunner(wh.cursor, wh.write_lock, {"moderation": 1, "webhook": 4}).start()
        self.runner = runner
        self.sender = WebhookSender(wh.cursor, wh.write_lock, RetryPolicy(
            max_attempts=s.webhook_max_attempts, base_delay=s.webhook_base_delay_s,
            max_delay=s.webhook_max_delay_s), runner=runner, post=state.intake.downloader.post)
        runner.register(KIND, self._run, lane="moderation")
        self.sender.resume_pending()

    # -- tasks ---------------------------------------------------------------------------------
    def submit(self, items: list[dict], policy, callback_url: str, dataset: str | None, user: str | None) -> dict:
        task_id = uuid.uuid4().hex
        request = {"items": items, "policy": policy, "dataset": dataset, "user": user}
        with self.state.wh.transaction(con=self.state.cursor()) as tx:
            tx.con.execute(
                "INSERT INTO catalog.moderation_tasks (task_id, status, policy, callback_url, request, "
                "delivery_status, created_by, created_dt) VALUES (?, 'queued', ?, ?, ?, 'pending', ?, ?)",
                [task_id, json.dumps(policy) if isinstance(policy, dict) else policy, callback_url,
                 json.dumps(request), user, catalog.now()])
            jobs.insert(tx.con, KIND, {"task_id": task_id}, owner=user, job_id=task_id)
        self.moderator.mark_pending([Item(**it) for it in items], task_id)
        self.runner.enqueue(task_id, KIND)
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

    def _set(self, task_id: str, **cols) -> None:
        sets = ", ".join(f"{k} = ?" for k in cols)
        with self.state.wh.write_lock:
            self.state.cursor().execute(f"UPDATE catalog.moderation_tasks SET {sets} WHERE task_id = ?",
                                        [*cols.values(), task_id])

    def _run(self, ctx) -> dict:
        """The `moderation` job: re-running a task a crash cut short is safe (cache, content ids)."""
        task_id = ctx.params["task_id"]
        row = self.state.cursor().execute(
            "SELECT request, status, created_dt FROM catalog.moderation_tasks WHERE task_id = ?", [task_id]).fetchone()
        if row is None:
            raise ModerationNotFound(f"unknown moderation task {task_id!r}")
        if row[1] not in ("queued", "running"):  # done before a crash: only the callback may be missing
            self._deliver(task_id)
            return {"items": len(json.loads(row[0]).get("items", []))}
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
        self._deliver(task_id)
        if error:  # the task's own words say 'error'; the job's say Error, with the same reason
            raise RuntimeError(error)
        return {"items": len(req["items"])}

    def _deliver(self, task_id: str) -> None:
        if self.task(task_id, with_result=False)["callback_url"]:
            try:
                self.sender.submit(task_id)
            except AlreadyDelivering:  # resumed by the runner on its own
                pass


def service(state) -> ModerationService:
    """The state's moderation service, made on first use (the API app knows nothing about it)."""
    svc = getattr(state, "moderation", None)
    if svc is None:
        with _lock:
            svc = getattr(state, "moderation", None)
            if svc is None:
                svc = state.moderation = ModerationService(state)
    return svc
