"""The fast HTTP query path (issue 16, part 4) answers as the slow one did.

What its optimisations could break: HTTP answers equal the SDK's (same rows,
same order, small results paged from memory and big ones from the file); a
query's record survives a crash once its id was returned, and a complete query
whose lazy final write was lost is Complete again after a restart; the cached
view definitions follow a new concept, a retrained one and an ingest; a long
poll returns the result when the query ends.  In-process (FastAPI's
TestClient on a real warehouse) but for the SIGKILL test.
"""
from __future__ import annotations

import threading

import pytest
from apiserver import Server, make_token, poll
from conftest import copy_photos

from warehouse import Warehouse, catalog
from warehouse.queries import QueryEngine, QuerySettings, jsonable


@pytest.fixture(scope="module")
def served(tmp_path_factory, photo_dir):
    from fastapi.testclient import TestClient

    from api.server import ServerSettings, create_app
    from api.server.state import ServerState

    base = tmp_path_factory.mktemp("query-path")
    root = base / "wh"
    wh = Warehouse.open(root)
    wh.ingest([str(copy_photos(photo_dir, base / "some", ["chelsea", "coffee", "astronaut", "horse", "rocket"]))],
              dataset="some", progress=False)
    wh.close()
    settings = ServerSettings(root=root, auth=False, load_model=False)
    state = ServerState(settings)
    with TestClient(create_app(settings, state=state)) as http:
        yield http, state, base


def _http_rows(http, sql: str, page: int = 400) -> tuple[dict, list[list]]:
    r = http.post("/api/v1/queries", json={"query": sql})
    assert r.status_code == 201, r.text
    qid = r.json()["query_id"]
    body = http.get(f"/api/v1/queries/{qid}", params={"wait": 30, "limit": page}).json()
    assert body["status"] == "Complete", body
    names, rows = body["results"]["columns"], []
    while True:
        rows += [[row["data"][n] for n in names] for row in body["results"]["data"]]
        nxt = body["results"]["next_offset"]
        if nxt is None:
            break
        body = http.get(f"/api/v1/queries/{qid}", params={"offset": nxt, "limit": page}).json()
    assert len(rows) == body["total_row_count"]
    return body, rows


def _sdk_rows(state, sql: str) -> list[list]:
    return [[jsonable(v) for v in row] for row in state.wh.sql(sql).fetchall()]


QUERIES = [
    "SELECT path, width, height FROM coactive_table ORDER BY path",
    "SELECT count(*) AS n, avg(width) AS w, min(height) AS h FROM coactive_table",
    "SELECT width > 400 AS wide, count(*) AS n FROM coactive_table GROUP BY ALL ORDER BY wide",
    "SELECT coactive_image_id, path FROM coactive_table ORDER BY width DESC, path LIMIT 3 OFFSET 1",
    "SELECT i, i * 0.5 AS half, CASE WHEN i % 7 = 0 THEN NULL ELSE 'x' || i END AS s "
    "FROM (SELECT unnest(range(2500)) AS i) ORDER BY i",  # past the in-memory size: paged from the file
    "SELECT path FROM coactive_table WHERE width < 0",  # no rows
]


@pytest.mark.parametrize("sql", QUERIES)
def test_http_answers_equal_the_sdk(served, sql):
    http, state, _ = served
    body, rows = _http_rows(http, sql)
    assert rows == _sdk_rows(state, sql)
    inline = body["query_id"] in state.engine._inline
    assert inline == (len(rows) <= state.engine.settings.inline_rows)
    # The Parquet download (what api.client reads) holds the same rows.
    import io

    import pyarrow.parquet as pq

    r = http.get(f"/api/v1/queries/{body['query_id']}/parquet")
    table = pq.read_table(io.BytesIO(r.content))
    assert [[jsonable(v) for v in row.values()] for row in table.to_pylist()] == rows


def test_view_definitions_are_cached_until_a_commit_moves_them(served, monkeypatch):
    http, state, _ = served
    import warehouse.queries as queries

    calls = []
    real = queries.counters
    monkeypatch.setattr(queries, "counters", lambda cur: calls.append(1) or real(cur))
    _http_rows(http, "SELECT 1 AS one")  # the first may read them (an earlier test committed)
    calls.clear()
    for i in range(3):
        _http_rows(http, f"SELECT {i} AS i")
    assert calls == []  # nothing committed: no catalog read for the definitions
    with state.wh.transaction() as tx:
        tx.data_changed()
    _http_rows(http, "SELECT 5 AS i")
    assert calls  # a commit moved a counter: read again


def test_the_same_sql_is_checked_once_per_definitions(served, monkeypatch):
    http, state, _ = served
    import warehouse.queries as queries

    checks = []
    real = queries.sandbox.check_sql
    monkeypatch.setattr(queries.sandbox, "check_sql", lambda *a: checks.append(a[0]) or real(*a))
    sql = "SELECT count(*) AS n FROM coactive_table WHERE width > 17"
    assert _http_rows(http, sql)[1] == _http_rows(http, sql)[1]
    assert checks == [sql]
    with state.wh.transaction() as tx:  # new definitions' fingerprint: checked again
        tx.data_changed()
    _http_rows(http, sql)
    assert checks == [sql, sql]
    bad = "SELECT * FROM catalog.api_tokens"
    for _ in range(2):  # a refusal is not remembered as a pass
        r = http.post("/api/v1/queries", json={"query": bad})
        assert r.status_code == 400
    assert checks.count(bad) == 2
    # Only number values differ: the remembered verdict holds (sandbox.verdict_key), the rows are its own.
    other = sql.replace("17", "400")
    assert _http_rows(http, other)[1] == _sdk_rows(state, other) != _http_rows(http, sql)[1]
    assert checks.count(other) == 0
    # Anything else differs (a name, a string, a comment): checked again, and refused on its own merits.
    for changed in (sql.replace("coactive_table", "'coactive_table.parquet'"),
                    sql.replace("coactive_table", "catalog.api_tokens"), sql.replace(" WHERE", " /* c */ WHERE")):
        status = http.post("/api/v1/queries", json={"query": changed}).status_code
        assert checks.count(changed) == 1 and status == (201 if "/*" in changed else 400)


def test_new_and_retrained_concepts_and_an_ingest_show_in_the_next_query(served, photo_dir):
    http, state, base = served
    sql = "SELECT path, round(cat_prob, 6) AS p FROM coactive_table ORDER BY path"
    r = http.post("/api/v1/queries", json={"query": sql})
    before = r.json() if r.status_code != 201 else \
        http.get(f"/api/v1/queries/{r.json()['query_id']}", params={"wait": 30}).json()
    assert before.get("status") != "Complete"  # no such column yet

    state.wh.create_concept("cat", prompts=["a photo of a cat"])
    _, rows = _http_rows(http, sql)
    assert rows == _sdk_rows(state, sql) and len(rows) == 5

    state.wh.update_concept("cat", prompts=["a photo of a rocket"])
    _, retrained = _http_rows(http, sql)
    assert retrained == _sdk_rows(state, sql) and retrained != rows

    count = "SELECT dataset, count(*) AS n FROM coactive_table GROUP BY dataset ORDER BY dataset"
    assert _http_rows(http, count)[1] == [["some", 5]]
    state.wh.ingest([str(copy_photos(photo_dir, base / "more", ["coffee", "moon"]))], dataset="more", progress=False)
    assert _http_rows(http, count)[1] == _sdk_rows(state, count) == [["more", 2], ["some", 5]]


def test_long_poll_returns_the_result_when_the_query_ends(served):
    http, state, _ = served
    sql = "SELECT count(*) AS n FROM (SELECT unnest(range(3000000)) AS x) WHERE x % 3 = 0"
    qid = http.post("/api/v1/queries", json={"query": sql}).json()["query_id"]
    body = http.get(f"/api/v1/queries/{qid}", params={"wait": 30}).json()
    assert body["status"] == "Complete" and body["results"]["data"] == [{"row": 0, "data": {"n": 1_000_000}}]


def test_post_with_wait_answers_the_final_record_and_its_first_page(served):
    """One round trip (what api.client and the benchmark use): the same rows as the SDK and as POST-then-GET."""
    http, state, _ = served
    sql = "SELECT path, width FROM coactive_table ORDER BY path"
    r = http.post("/api/v1/queries", params={"wait": 30, "limit": 2}, json={"query": sql})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["status"] == "Complete" and body["queryId"] == body["query_id"]
    want = _sdk_rows(state, sql)
    assert [[d["data"][n] for n in ("path", "width")] for d in body["results"]["data"]] == want[:2]
    assert body["results"]["next_offset"] == 2 and body["total_row_count"] == len(want)
    assert body["result"]["data"] == body["results"]["data"]  # the Coactive twin
    assert _http_rows(http, sql)[1] == want
    # A query that fails ends the wait too; one that outlasts it comes back as it is (then poll or stop).
    failed = http.post("/api/v1/queries", params={"wait": 30},
                       json={"query": "SELECT CAST('x' AS INTEGER) AS n"}).json()
    assert failed["status"] == "Error" and failed["result"]["error"] == failed["error"] and failed["error"]
    from apiserver import LONG_QUERY

    slow = http.post("/api/v1/queries", params={"wait": 0.3}, json={"query": LONG_QUERY}).json()
    assert slow["status"] in ("Queued", "Running") and slow["results"] is None
    http.post(f"/api/v1/queries/{slow['query_id']}/stop")
    assert http.get(f"/api/v1/queries/{slow['query_id']}", params={"wait": 30}).json()["status"] == "Stopped"
    # Refused SQL is still refused before anything is queued.
    assert http.post("/api/v1/queries", params={"wait": 30}, json={"query": "SELECT * FROM catalog.api_tokens"}
                     ).status_code == 400


def test_engine_wakes_waiters_once_and_lists_what_it_shows(fresh_root):
    wh = Warehouse.open(fresh_root)
    # Neither `Running` nor (for a while) the end is written: one INSERT so far.
    engine = QueryEngine(wh, QuerySettings(workers=1, running_after_s=3600)).start()
    try:
        engine._writer.linger = 3600  # the final write of a complete query waits for company
        woken = []
        rec = engine.submit("SELECT 42 AS answer")
        ended = threading.Event()
        engine.on_final(rec["query_id"], lambda: (woken.append(1), ended.set()))
        cancelled = engine.on_final(rec["query_id"], lambda: woken.append("cancelled"))
        cancelled()
        assert ended.wait(60)
        done = engine.wait(rec["query_id"], 60)
        assert done["status"] == "Complete" and done["total_row_count"] == 1 and done["start_dt"] <= done["end_dt"]
        # Shown at once, not yet in the catalog: the result file is what makes it safe.
        row = wh.cursor().execute("SELECT status FROM catalog.queries WHERE query_id = ?", [rec["query_id"]]).fetchone()
        assert row == ("Queued",) and engine.result_path(rec["query_id"]).is_file()
        recs, total = engine.list()  # a list filters in SQL: it commits what is held first
        assert total == 1 and recs[0]["status"] == "Complete"
        assert wh.cursor().execute("SELECT status FROM catalog.queries").fetchall() == [("Complete",)]
        late = []
        engine.on_final(rec["query_id"], lambda: late.append(1))  # already final: called at once
        assert woken == [1] and late == [1]
    finally:
        engine.shutdown()
        wh.close()


def test_complete_query_whose_final_write_was_lost_is_complete_after_restart(fresh_root):
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1)).start()
    sql = "SELECT 7 AS seven, 'x' AS s, 1.5::DOUBLE AS f"
    try:
        rec = engine.wait(engine.submit(sql)["query_id"], 60)
        assert rec["status"] == "Complete"
        want = engine.page(rec["query_id"])
    finally:
        engine.shutdown()
    # As if the server died after the worker renamed the file, before the lazy write committed.
    wh.cursor().execute("UPDATE catalog.queries SET status = 'Running', end_dt = NULL, total_row_count = NULL, "
                        "columns = NULL WHERE query_id = ?", [rec["query_id"]])
    engine = QueryEngine(wh, QuerySettings(workers=1)).start()
    try:
        again = engine.record(rec["query_id"])
        assert again["status"] == "Complete" and again["error"] is None
        assert again["total_row_count"] == 1 and again["columns"] == rec["columns"]
        assert again["created_dt"] <= again["start_dt"] <= again["end_dt"]
        assert engine.page(rec["query_id"]) == want
    finally:
        engine.shutdown()
        wh.close()


def test_records_survive_sigkill_once_their_ids_were_returned(tmp_path):
    root = tmp_path / "wh"
    token = make_token(root, "crash", "read")
    args = ("--query-workers", "1", "--lazy-model")
    srv = Server(root, *args).start()
    try:
        with srv.client(token) as http:
            done = http.post("/api/v1/queries", json={"query": "SELECT 1 AS one"}).json()["query_id"]
            assert http.get(f"/api/v1/queries/{done}", params={"wait": 30}).json()["status"] == "Complete"
            ids = [http.post("/api/v1/queries", json={"query": f"SELECT {i} AS i"}).json()["query_id"]
                   for i in range(6)]
            # Ids from a POST that waited for the end (one round trip) are as durable.
            for i in (6, 7):
                body = http.post("/api/v1/queries", params={"wait": 30}, json={"query": f"SELECT {i} AS i"}).json()
                assert body["status"] == "Complete"
                ids.append(body["query_id"])
    finally:
        srv.kill()  # SIGKILL right after the last id came back (and within the complete query's linger)
    srv = Server(root, *args).start()
    try:
        with srv.client(token) as http:
            assert poll(http, done)["results"]["data"] == [{"row": 0, "data": {"one": 1}}]
            for i, qid in enumerate(ids):
                body = poll(http, qid)
                assert body["status"] == "Complete", body
                assert body["results"]["data"] == [{"row": 0, "data": {"i": i}}]
            listed = http.get("/api/v1/queries", params={"limit": 100}).json()
            assert {q["query_id"] for q in listed["queries"]} == set(ids) | {done}
            assert {q["status"] for q in listed["queries"]} == {"Complete"}
    finally:
        srv.stop()


def test_a_stopped_query_stays_stopped(fresh_root):
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1)).start()
    try:
        from apiserver import LONG_QUERY

        busy = engine.submit(LONG_QUERY)
        queued = engine.submit("SELECT 1 AS one")
        assert engine.stop(queued["query_id"])["status"] == "Stopped"
        stopping = engine.stop(busy["query_id"])
        assert stopping["status"] in ("Stopping", "Stopped")
        assert engine.wait(busy["query_id"], 60)["status"] == "Stopped"
        assert engine.wait(queued["query_id"], 5)["status"] == "Stopped"
        assert not engine.result_path(queued["query_id"]).exists()
        row = wh.cursor().execute("SELECT status FROM catalog.queries WHERE query_id = ?",
                                  [busy["query_id"]]).fetchone()
        assert row == ("Stopped",)
        assert catalog.now() >= engine.record(busy["query_id"])["end_dt"]
    finally:
        engine.shutdown()
        wh.close()


def test_fair_queue_lends_a_slot_its_cap_would_leave_idle():
    from warehouse.query_queue import FairQueue

    q = FairQueue(per_owner=1, borrow=True)
    for qid in ("a1", "a2", "a3"):
        q.put(qid, "A")
    assert q.take(timeout=0) == ("a1", "A") and not q.borrowed
    assert q.take(timeout=0) == ("a2", "A") and q.borrowed == {"a2"}  # nobody else waits: lent
    assert not q.others_waiting("A")
    q.put("b1", "B")
    assert q.others_waiting("A") and not q.others_waiting("B")
    q.done("A", "a2")  # the engine took the lent slot back ...
    q.put_front("a2", "A")  # ... and a2 waits first in A's queue
    assert q.take(timeout=0) == ("b1", "B")  # B is under its cap: it goes first
    assert q.take(timeout=0) == ("a2", "A") and q.borrowed == {"a2"}
    strict = FairQueue(per_owner=1)
    strict.put("x1", "X"), strict.put("x2", "X")
    assert strict.take(timeout=0) == ("x1", "X") and strict.take(timeout=0) is False


def test_one_token_uses_every_worker_until_another_token_waits(fresh_root):
    import time

    from apiserver import LONG_QUERY

    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=2, lend_idle_slots=True, lent_grace_s=0.2)).start()
    try:
        a = [engine.submit(LONG_QUERY, owner="A")["query_id"] for _ in range(2)]
        deadline = time.monotonic() + 60
        while len(engine._active) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert set(engine._active) == set(a)  # both slots run A's queries (its cap is 1)
        b = engine.submit("SELECT 6 * 7 AS answer", owner="B")
        done = engine.wait(b["query_id"], 60)
        assert done["status"] == "Complete" and engine.page(b["query_id"])[1][0]["data"] == {"answer": 42}
        # The lent query was put back and runs again; neither of A's ended for it.
        assert all(engine.record(q)["status"] in ("Queued", "Running") for q in a)
        for q in a:
            engine.stop(q)
        assert [engine.wait(q, 60)["status"] for q in a] == ["Stopped", "Stopped"]
    finally:
        engine.shutdown()
        wh.close()


def test_group_commit_tells_a_waiting_writer_before_the_lazy_ones_commit(tmp_path):
    """A held lazy write (a Complete) commits after, and apart from, the INSERT a client waits on."""
    import duckdb

    from warehouse.query_queue import GroupCommit

    con = duckdb.connect(str(tmp_path / "c.duckdb"))
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v VARCHAR)")
    con.execute("INSERT INTO t VALUES (1, 'old')")
    writer = GroupCommit(con.cursor, linger=3600)
    try:
        told = []
        writer.submit("UPDATE t SET v = 'done' WHERE k = 1 RETURNING v", [], lambda row, e: told.append(("lazy", row, e)),
                      lazy=True)
        writer.submit("INSERT INTO t VALUES (2, 'new') RETURNING v", [], lambda row, e: told.append(("now", row, e)))
        # A lazy write that fails (a duplicate key) fails alone: the INSERT beside it stands.
        writer.submit("INSERT INTO t VALUES (2, 'dup') RETURNING v", [], lambda row, e: told.append(("dup", row, e)),
                      lazy=True)
        writer.flush()
        assert told[0] == ("now", ("new",), None)
        assert told[1] == ("lazy", ("done",), None) and told[2][0] == "dup" and told[2][2] is not None
        assert con.execute("SELECT k, v FROM t ORDER BY k").fetchall() == [(1, "done"), (2, "new")]
    finally:
        writer.close()
        con.close()


def test_a_final_write_leaves_a_final_record_as_it_is(fresh_root):
    """The end's UPDATE finds its row by the key alone (the index) and its CASEs keep a final record."""
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1))  # not started: only its committer runs
    try:
        cur = wh.cursor()
        for qid, status in (("done", "Error"), ("open", "Queued"), ("halt", "Stopping")):
            cur.execute("INSERT INTO catalog.queries (query_id, query, status, created_dt, error) "
                        "VALUES (?, 'SELECT 1', ?, ?, ?)", [qid, status, catalog.now(), "boom" if qid == "done" else None])
        cols = [{"name": "x", "type": "int64"}]
        engine._finish("done", "Complete", total=9, columns=cols)
        engine._finish("open", "Complete", total=9, columns=cols)
        engine._finish("halt", "Error", error="interrupted")
        engine._writer.flush()
        rows = {r[0]: r[1:] for r in cur.execute(
            "SELECT query_id, status, error, total_row_count, end_dt IS NOT NULL FROM catalog.queries").fetchall()}
        assert rows == {"done": ("Error", "boom", None, False), "open": ("Complete", None, 9, True),
                        "halt": ("Stopped", "interrupted", None, True)}
    finally:
        engine.shutdown()
        wh.close()


def test_shared_statements_write_what_one_statement_each_would(fresh_root):
    """A batch's INSERTs and ends run as one INSERT and one joined UPDATE (`query_queue.Rows`): the
    rows, the RETURNING each write is told, a kept final record, a Stopping one and an unknown id
    all equal the one-statement-each path."""
    from warehouse.query_queue import GroupCommit, Pending
    from warehouse.queries import _ENDS, _INSERT, _INSERTS

    when = catalog.now()
    cols = '[{"name": "x", "type": "int64"}]'

    class Counting:  # the cursor, counting statements
        def __init__(self, cur):
            self.cur, self.n = cur, 0

        def execute(self, *a):
            self.n += 1
            return self.cur.execute(*a)

    told = {}
    for shared in (False, True):
        wh = Warehouse.open(fresh_root / str(shared))
        try:
            engine = QueryEngine(wh, QuerySettings(workers=1))  # not started: for its end statement's text
            engine._writer.close()
            said = []
            engine._writer = type("Capture", (), {"submit": lambda self, sql, *a, **k: said.append(sql)})()
            engine._finish("x", "Complete")
            cur = wh.cursor()
            for qid, status in (("d", "Stopped"), ("e", "Stopping")):
                cur.execute("INSERT INTO catalog.queries (query_id, query, status, created_dt) VALUES (?, 'x', ?, ?)",
                            [qid, status, when])
            items = []
            for qid in ("a", "b", "c"):
                row = [qid, "SELECT 1", None, None, when, "owner"]
                items.append(Pending(_INSERT, row, False, False, None, _INSERTS if shared else None, row))
            for qid, status, error in (("a", "Complete", None), ("b", "Error", "boom"), ("c", "Complete", None),
                                       ("zz", "Complete", None), ("d", "Error", "late"), ("e", "Error", "cut")):
                total = 9 if status == "Complete" else None
                items.append(Pending(said[0], [status, status, error, when, when, total, cols, qid], True, False, None,
                                     _ENDS if shared else None, [qid, status, error, when, when, total, cols]))
            counting = Counting(cur)
            GroupCommit._transact(counting, items)
            told[shared] = ([i.row for i in items], [i.error for i in items],
                            cur.execute("SELECT query_id, status, error, total_row_count, start_dt, end_dt, columns "
                                        "FROM catalog.queries ORDER BY query_id").fetchall())
            statements = counting.n
        finally:
            wh.close()
    assert statements == 4  # BEGIN, one INSERT, one UPDATE, COMMIT
    assert told[True] == told[False]
    rows, errors, table = told[True]
    assert errors == [None] * 9
    assert rows[3:] == [("Complete",), ("Error",), ("Complete",), None, ("Stopped",), ("Stopped",)]
    assert [r[:4] for r in table] == [("a", "Complete", None, 9), ("b", "Error", "boom", None),
                                      ("c", "Complete", None, 9), ("d", "Stopped", None, None),
                                      ("e", "Stopped", "cut", None)]


def test_shared_runs_keep_order_and_leave_repeated_keys_alone():
    from warehouse.query_queue import Pending, Rows, _runs

    form, other = Rows(lambda n: ""), Rows(lambda n: "")
    mk = lambda key, rows=form: Pending("sql", [], False, False, None, rows, [key])  # noqa: E731
    plain = Pending("sql", [], False, False, None)
    work = [mk(1), mk(2), plain, mk(3), mk(4, other), mk(5, other), mk(6), mk(6), mk(7)]
    runs = [[i.row_args[0] if i.row_args else None for i in run] for run in _runs(work)]
    assert runs == [[1, 2], [None], [3], [4, 5], [6], [6], [7]]
