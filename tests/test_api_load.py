"""Twenty concurrent clients, ten queries each, on loopback against two query workers: every answer correct."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

CLIENTS, QUERIES = 20, 10


def test_twenty_clients_ten_queries_each(api_server):
    with api_server.client(api_server.tokens["read"]) as http:
        qid = http.post("/api/v1/queries", json={"query": "SELECT width AS w FROM coactive_table"}).json()["query_id"]
        rows = http.get(f"/api/v1/queries/{qid}", params={"wait": 30, "limit": 1000}).json()["results"]["data"]
        widths = [r["data"]["w"] for r in rows]
    assert widths

    def one_client(k: int) -> list[tuple[int, int, int]]:
        out = []
        with httpx.Client(base_url=api_server.url, timeout=60,
                          headers={"Authorization": f"Bearer {api_server.tokens['read']}"}) as c:
            for i in range(QUERIES):
                cut = (k * QUERIES + i) * 7 % 600
                r = c.post("/api/v1/queries", json={
                    "query": f"SELECT {k} AS client, {i} AS i, count(*) AS n FROM coactive_table WHERE width > {cut}"})
                assert r.status_code == 201, r.text
                qid = r.json()["query_id"]
                body = c.get(f"/api/v1/queries/{qid}", params={"wait": 30}).json()
                while body["status"] not in ("Complete", "Error", "Stopped"):
                    body = c.get(f"/api/v1/queries/{qid}", params={"wait": 30}).json()
                assert body["status"] == "Complete", body
                row = body["results"]["data"][0]["data"]
                out.append((row["client"], row["i"], row["n"], cut))
        return out

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = [r for rows in pool.map(one_client, range(CLIENTS)) for r in rows]
    assert len(results) == CLIENTS * QUERIES
    assert sorted((c, i) for c, i, _, _ in results) == [(c, i) for c in range(CLIENTS) for i in range(QUERIES)]
    for _, _, n, cut in results:
        assert n == sum(1 for w in widths if w > cut)
