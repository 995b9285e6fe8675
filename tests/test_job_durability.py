"""Accepted jobs do not vanish: a `pixql serve` SIGKILLed right after a 202 or in the middle of a job,
or stopped gracefully under one, comes back with the job, finishes it, and reports counts equal to
the rows the warehouse holds; no ingest run is left `Running`.  Plus the runner itself, in process."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from apiserver import Server, make_token, poll
from test_ingest_resume import make_images
from test_moderation_webhooks import Receiver

from warehouse import Warehouse, catalog
from warehouse.jobs import INTERRUPTED, Interrupted, JobRunner, Retry

N = 300


def wait_job(http, job_id: str, until=("Complete", "Error", "Stopped"), timeout: float = 600, cond=None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = http.get(f"/api/v1/ingestion/{job_id}")
        assert r.status_code == 200, r.text  # never a 404: the job row was committed before the 202
        job = r.json()
        if (cond(job) if cond else job["status"] in until):
            return job
        assert job["status"] not in ("Error", "Stopped") or "Error" in until, job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s: {job}"
        time.sleep(0.05)


def rows(http, dataset: str) -> int:
    q = http.post("/api/v1/queries", json={"query": f"SELECT count(*) AS n FROM coactive_table WHERE dataset = '{dataset}'"})
    body = poll(http, q.json()["query_id"], timeout=120)
    assert body["status"] == "Complete", body
    return body["results"]["data"][0]["data"]["n"]


def catalog_rows(root: Path, sql: str, args=None) -> list[tuple]:
    wh = Warehouse.open(root, read_only=True)
    try:
        return wh.sql(sql, args).fetchall()
    finally:
        wh.close()


@pytest.fixture
def setup(tmp_path):
    src = tmp_path / "imgs"
    make_images(src, N)
    root = tmp_path / "wh"
    tokens = {s: make_token(root, f"t-{s}", s) for s in ("read", "write")}
    return root, src, tokens


def test_sigkill_right_after_202_and_during_ingest(setup, tmp_path):
    root, src, tokens = setup
    uploads = sorted(src.iterdir())[:12]
    srv = Server(root).start()
    try:
        with srv.client(tokens["write"]) as w:
            r = w.post("/api/v1/ingestion", json={"dataset": "early", "paths": [str(src)]})
            assert r.status_code == 202, r.text
            early = r.json()["job_id"]
            files = [("files", (p.name, p.read_bytes(), "image/png")) for p in uploads]
            r = w.post("/api/v1/ingestion", files=files, data={"dataset": "uploaded"})
            assert r.status_code == 202, r.text
            uploaded = r.json()["job_id"]
    finally:
        srv.kill()  # SIGKILL at once after the second 202: no shutdown code runs

    srv = Server(root).start()
    try:
        with srv.client(tokens["write"]) as w:
            for job_id, dataset, n in ((early, "early", N), (uploaded, "uploaded", len(uploads))):
                job = wait_job(w, job_id)
                assert job["status"] == "Complete", job
                assert job["total_assets"] == job["processed_assets"] == job["added_assets"] == n, job
                assert job["skipped_assets"] == 0 and job["errored_assets"] == 0, job
                assert rows(w, dataset) == n
            r = w.post("/api/v1/ingestion", json={"dataset": "late", "paths": [str(src)]})
            late = r.json()["job_id"]
            at_kill = wait_job(w, late, cond=lambda j: j["added_assets"] >= 64 or j["status"] not in ("Queued", "Running"))
            assert at_kill["status"] == "Running" and at_kill["added_assets"] < N, \
                f"the job ended before the kill; make the input larger: {at_kill}"
    finally:
        srv.kill()  # SIGKILL in the middle of the job

    srv = Server(root).start()
    try:
        with srv.client(tokens["write"]) as w:
            job = wait_job(w, late)
            assert job["status"] == "Complete", job
            # every asset counted once, whichever attempt committed it, and equal to the rows
            assert job["added_assets"] == N == rows(w, "late"), job
            assert job["skipped_assets"] == 0 and job["processed_assets"] == N, job
            # Stopping a running job: Stopped, with what it committed, which the warehouse holds.
            halted = w.post("/api/v1/ingestion", json={"dataset": "halted", "paths": [str(src)]}).json()["job_id"]
            wait_job(w, halted, cond=lambda j: j["added_assets"] >= 1 or j["status"] not in ("Queued", "Running"))
            assert w.post(f"/api/v1/ingestion/{halted}/stop").status_code == 200
            job = wait_job(w, halted, until=("Stopped",))
            assert 1 <= job["added_assets"] == rows(w, "halted") < N, job
            assert w.post("/api/v1/ingestion/nosuchjob/stop").status_code == 404
    finally:
        srv.stop()
    runs = dict(((r, (s, a)) for r, s, a in catalog_rows(
        root, "SELECT run_id, status, assets_added FROM catalog.ingest_runs")))
    assert runs[early] == ("Complete", N) and runs[late] == ("Complete", N) and runs[uploaded] == ("Complete", 12)
    assert runs[halted][0] == "Stopped" and not [r for r, (s, _) in runs.items() if s == "Running"]
    assert catalog_rows(root, "SELECT job_id, status FROM catalog.jobs WHERE status <> 'Complete'") == [
        (halted, "Stopped")]


def test_graceful_stop_waits_for_the_ingest_then_restart_resumes(setup):
    root, src, tokens = setup
    srv = Server(root).start()
    try:
        with srv.client(tokens["write"]) as w:
            job_id = w.post("/api/v1/ingestion", json={"dataset": "d", "paths": [str(src)]}).json()["job_id"]
            at_stop = wait_job(w, job_id, cond=lambda j: j["added_assets"] >= 64 or j["status"] not in ("Queued", "Running"))
            assert at_stop["status"] == "Running", f"the job ended before the stop; make the input larger: {at_stop}"
    finally:
        t0 = time.monotonic()
        assert srv.stop() in (0, -15)  # SIGTERM: the lifespan stops the runner, then closes the warehouse
        assert time.monotonic() - t0 < 30
    log = srv.log()
    assert "Traceback" not in log and "not closing the warehouse" not in log, log
    # The ingest stopped at a commit point before the warehouse closed: its run says so, with the
    # committed count, and the job waits to be resumed.
    (status, added), = catalog_rows(root, "SELECT status, assets_added FROM catalog.ingest_runs WHERE run_id = ?", [job_id])
    (in_views,), = catalog_rows(root, "SELECT count(*) FROM coactive_table WHERE dataset = 'd'")
    assert status == "Stopped" and 64 <= added == in_views < N
    assert catalog_rows(root, "SELECT status FROM catalog.jobs WHERE job_id = ?", [job_id]) == [("Queued",)]

    srv = Server(root).start()
    try:
        with srv.client(tokens["write"]) as w:
            job = wait_job(w, job_id)
            assert job["status"] == "Complete" and job["added_assets"] == N == rows(w, "d"), job
    finally:
        srv.stop()


# The callback receiver listens on loopback, which the intake refuses unless allowed.
LOOPBACK_CALLBACKS = ("--allow-url-network", "127.0.0.0/8")


def test_async_moderation_and_its_callback_survive_sigkill(tmp_path, photo_dir, monkeypatch):
    root = tmp_path / "wh"
    token = make_token(root, "mod", "write")
    monkeypatch.setenv("PIXQL_WEBHOOK_BASE_DELAY_S", "3")  # room to kill between two attempts
    monkeypatch.setenv("PIXQL_WEBHOOK_MAX_ATTEMPTS", "5")
    rx = Receiver(fail=1)
    srv = Server(root, "--lazy-model", *LOOPBACK_CALLBACKS).start()
    items = [{"path": str(photo_dir / "rocket.png"), "id": "r1"}, {"path": str(photo_dir / "flower.jpg")}]
    try:
        with srv.client(token) as w:
            r = w.post("/api/v1/moderate", json={"items": items, "callback_url": rx.url})
            assert r.status_code == 202, r.text
            task_id = r.json()["task_id"]
    finally:
        srv.kill()  # right after the 202
    try:
        srv = Server(root, "--lazy-model", *LOOPBACK_CALLBACKS).start()
        try:
            with srv.client(token) as w:
                deadline = time.monotonic() + 300
                while not rx.requests:  # the resumed task ran and its first callback failed (HTTP 500)
                    assert time.monotonic() < deadline, w.get(f"/api/v1/moderate/tasks/{task_id}").json()
                    time.sleep(0.05)
                task = w.get(f"/api/v1/moderate/tasks/{task_id}").json()
                assert task["status"] == "done" and [x["id"] for x in task["result"]["results"]] == ["r1", None]
        finally:
            srv.kill()  # during the backoff before the second attempt
        srv = Server(root, "--lazy-model", *LOOPBACK_CALLBACKS).start()
        try:
            with srv.client(token) as w:
                deadline = time.monotonic() + 120
                while (d := w.get(f"/api/v1/moderate/tasks/{task_id}/deliveries").json())["delivery_status"] != "delivered":
                    assert time.monotonic() < deadline, d
                    time.sleep(0.05)
                # resumed at attempt 2 of the same delivery: same id, delivered once
                assert [(a["attempt"], a["ok"]) for a in d["attempts"]] == [(1, False), (2, True)]
                assert len({a["delivery_id"] for a in d["attempts"]}) == 1 and len(rx.requests) == 2
                assert rx.requests[0]["body"] == rx.requests[1]["body"]
                assert json.loads(rx.requests[1]["body"])["status"] == "done"
        finally:
            srv.stop()
    finally:
        rx.close()
    assert catalog_rows(root, "SELECT kind, status FROM catalog.jobs ORDER BY kind") == [
        ("moderation", "Complete"), ("webhook", "Complete")]


def test_killed_cli_ingest_run_is_closed_with_committed_counts_on_open(tmp_path):
    src = tmp_path / "imgs"
    make_images(src, N)
    root = tmp_path / "wh"
    proc = subprocess.Popen([sys.executable, "-m", "api.cli", "ingest", str(src), "--dataset", "k", "--root",
                             str(root), "--quiet", "--part-rows", "24", "--batch-size", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = root / "datasets" / "k" / "assets"
    deadline = time.monotonic() + 300
    while not (parts.exists() and len(list(parts.glob("part-*.parquet"))) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wh = Warehouse.open(root)  # read-write: the run's process is gone, so the run is closed
    try:
        (status, error, added), = wh.sql("SELECT status, error, assets_added FROM catalog.ingest_runs").fetchall()
        (n,), = wh.sql("SELECT count(*) FROM coactive_table WHERE dataset = 'k'").fetchall()
        assert status == "Error" and error == catalog.INTERRUPTED_RUN and added == n > 0
    finally:
        wh.close()


# -- the runner in process ---------------------------------------------------------------------
@pytest.fixture
def wh(fresh_root):
    w = Warehouse.open(fresh_root)
    yield w
    w.close()


def _runner(wh, **lanes):
    return JobRunner(wh.cursor, wh.write_lock, lanes or {"default": 1})


def test_runner_recovers_running_jobs_and_ends_unresumable_ones(wh):
    from warehouse import jobs

    con = wh.cursor()
    for job_id, kind in (("a", "redo"), ("b", "once")):
        jobs.insert(con, kind, {"x": job_id}, job_id=job_id)
        con.execute("UPDATE catalog.jobs SET status = 'Running', attempts = 1 WHERE job_id = ?", [job_id])
    seen = []
    runner = _runner(wh)
    runner.register("redo", lambda ctx: seen.append((ctx.params["x"], ctx.resumed)) or {"n": 1})
    runner.register("once", lambda ctx: seen.append("must not run"), resumable=False)
    runner.start()
    try:
        a = runner.wait("a", timeout=30)
        assert a["status"] == "Complete" and a["counters"] == {"n": 1} and a["attempts"] == 2
        b = runner.get("b")
        assert b["status"] == "Error" and b["error"] == INTERRUPTED
        assert seen == [("a", True)]
    finally:
        assert runner.shutdown(5)


def test_runner_shutdown_interrupts_waits_and_the_next_runner_resumes(wh):
    started, release = threading.Event(), threading.Event()

    def long_job(ctx):
        if ctx.resumed:
            return {"done": ctx.counters["step"] + 1}
        ctx.progress(step=1)
        started.set()
        while not ctx.stopping:
            time.sleep(0.01)
        raise Interrupted({"step": 2})

    runner = _runner(wh)
    runner.register("long", long_job)
    runner.start()
    job = runner.submit("long", {}, owner="me")
    assert job["status"] in ("Queued", "Running") and job["owner"] == "me"  # committed before submit returned
    assert started.wait(30)
    assert runner.get(job["job_id"])["status"] == "Running"
    assert runner.shutdown(10)  # the handler stopped at its safe point, the thread ended
    assert runner.get(job["job_id"])["status"] == "Queued" and runner.get(job["job_id"])["counters"] == {"step": 2}

    again = _runner(wh)
    again.register("long", long_job)
    again.start()
    done = again.wait(job["job_id"], timeout=30)
    assert done["status"] == "Complete" and done["counters"]["done"] == 3
    assert again.shutdown(5)

    # A handler that does not stop: shutdown says so instead of pretending.
    stubborn = _runner(wh)
    stubborn.register("stuck", lambda ctx: (started.set(), release.wait(30)))
    stubborn.start()
    started.clear()
    stubborn.submit("stuck", {})
    assert started.wait(30)
    assert stubborn.shutdown(0.2) is False
    release.set()


def test_runner_stop_ends_queued_and_running_jobs_as_stopped(wh):
    started = threading.Event()

    def until_stopped(ctx):
        started.set()
        while not ctx.stopping:
            time.sleep(0.01)
        raise Interrupted({"stopped_at": "safe point"})

    runner = _runner(wh)
    runner.register("loop", until_stopped)
    runner.start()
    try:
        running = runner.submit("loop", {})["job_id"]
        queued = runner.submit("loop", {})["job_id"]  # one lane thread: waits behind the first
        assert started.wait(30)
        assert runner.stop(queued)["status"] == "Stopped"
        runner.stop(running)
        done = runner.wait(running, 30)
        assert done["status"] == "Stopped" and done["counters"] == {"stopped_at": "safe point"} and done["end_dt"]
        assert runner.get(queued)["attempts"] == 0  # never ran
    finally:
        assert runner.shutdown(5)


def test_runner_retry_backoff_and_errors(wh):
    calls = []

    def flaky(ctx):
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise Retry(0.2, {"tries": len(calls)})
        return {"tries": len(calls)}

    runner = _runner(wh, default=1, other=1)
    runner.register("flaky", flaky)
    runner.register("bad", lambda ctx: 1 / 0, lane="other")
    runner.start()
    try:
        ok = runner.submit("flaky", {})
        bad = runner.submit("bad", {})
        assert runner.wait(bad["job_id"], 30)["error"] == "ZeroDivisionError: division by zero"
        done = runner.wait(ok["job_id"], 30)
        assert done["status"] == "Complete" and done["counters"] == {"tries": 3} and done["attempts"] == 3
        assert calls[1] - calls[0] >= 0.2 and calls[2] - calls[1] >= 0.2
        with pytest.raises(ValueError, match="unknown job kind"):
            runner.submit("nope", {})
    finally:
        runner.shutdown(5)


def test_warehouse_without_jobs_table_or_run_error_column_upgrades_on_open(fresh_root):
    wh = Warehouse.open(fresh_root)
    con = wh.cursor()
    # Today's release: no catalog.jobs, no ingest_runs.error, and a run a killed ingest left Running.
    con.execute("DROP TABLE catalog.jobs")
    con.execute("ALTER TABLE catalog.ingest_runs DROP COLUMN error")
    con.execute("UPDATE catalog.meta SET value = '1' WHERE key = 'schema_version'")  # what that release wrote
    con.execute("INSERT INTO catalog.ingest_runs (run_id, dataset, status, started_dt, assets_added) "
                "VALUES ('r1', 'x', 'Running', now(), 7)")
    wh.close()
    wh = Warehouse.open(fresh_root)
    try:
        assert wh.sql("SELECT count(*) FROM catalog.jobs").fetchone() == (0,)
        # nothing of r1 was committed: the honest count is 0, not the 7 it last published
        assert wh.sql("SELECT status, error, assets_added FROM catalog.ingest_runs").fetchall() == [
            ("Error", catalog.INTERRUPTED_RUN, 0)]
    finally:
        wh.close()
