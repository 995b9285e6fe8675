"""The query engine in-process: the memory cap ends a query in Error and the worker carries on."""
from __future__ import annotations

from warehouse import Warehouse
from warehouse.queries import QueryEngine, QuerySettings


def test_memory_cap(fresh_root):
    wh = Warehouse.open(fresh_root)
    engine = QueryEngine(wh, QuerySettings(workers=1, memory_limit="32MB")).start()
    try:
        big = engine.submit("SELECT length(string_agg(repeat('x', 1000000), '')) AS n FROM (SELECT unnest(range(200)) x)")
        small = engine.submit("SELECT length(string_agg(repeat('x', 1000), '')) AS n FROM (SELECT unnest(range(200)) x)")
        done = engine.wait(big["query_id"], 60)
        assert done["status"] == "Error" and "memory cap of 32MB" in done["error"]
        ok = engine.wait(small["query_id"], 60)
        assert ok["status"] == "Complete" and engine.page(small["query_id"])[1][0]["data"] == {"n": 200_000}
    finally:
        engine.shutdown()
        wh.close()
