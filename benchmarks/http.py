"""HTTP query throughput and latency: 20 concurrent clients x 10 queries against `pixql serve` on loopback.

    nice -n 10 python benchmarks/http.py [--clients 20] [--queries 10] [--workers 2] [--per-token 0]

Builds a warehouse from the bundled photos in a temporary directory, then
measures in this process:
  * sdk:   the same queries run directly with `Warehouse.sql` (no HTTP, no
           sandbox, no result files), one after another: the floor;
  * sdk-N: the same from N threads, a cursor each (DuckDB reads in parallel);
  * sdk-1: one query at a time, as the lone client below sends them;
  * http:  `pixql serve` as a subprocess on 127.0.0.1 (auth on); each client
           thread submits with `?wait` (the answer comes once the query is
           final, with its rows: one round trip, as `api.client.Client` does),
           one query at a time; latency is submit to rows in hand;
  * long:  the same as POST, then a long-polling GET (the Coactive SDK's shapes);
  * poll:  POST, then the tutorial's loop (GET every 50 ms, no long poll);
  * http-1, long-1: one client alone, --lone queries: latency without queueing;
  * mod:    as http, while another client records a moderator's decision
           every 1/--decisions-per-s seconds (each one changes what
           `moderation_status` reads, so the sandbox must follow it);
           --decision-rows seeds that many older decisions first;
and prints queries/s, p50 and p99 latency, the load (`uptime`) before and
after, and the two goals of issue 16 side by side with the SDK from the same
run: what HTTP adds to a lone client's query (p50, ms) and the 20-client
throughput as a fraction of the SDK's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

_here = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _here]
sys.path.insert(0, str(_here.parent))
sys.path.insert(0, str(_here.parent / "tests"))  # apiserver: run `pixql serve` as a subprocess

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx  # noqa: E402


def queries_for(client: int, n: int) -> list[str]:
    return [f"SELECT {client} AS client, {i} AS i, count(*) AS n, avg(width) AS w FROM coactive_table "
            f"WHERE width > {(client * n + i) * 7 % 600}" for i in range(n)]


def tree_rss(pid: int) -> list[int]:
    """RSS of `pid` and then of each of its child processes, from /proc."""
    page, kids = os.sysconf("SC_PAGE_SIZE"), []
    for d in os.listdir("/proc"):
        try:
            if d.isdigit() and int(open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
        except (OSError, ValueError, IndexError):
            pass
    out = []
    for p in [pid] + sorted(kids):
        try:
            out.append(int(open(f"/proc/{p}/statm").read().split()[1]) * page)
        except OSError:
            pass
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of `pid` and its live child processes (the query workers), from /proc.

    A load-independent companion to the wall-clock figures: on a shared machine
    a query waits for a core, but the CPU it burns is roughly the same."""
    tck, total = os.sysconf("SC_CLK_TCK"), 0.0
    for d in os.listdir("/proc"):
        try:
            if not d.isdigit():
                continue
            fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
            if int(d) == pid or int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tck
        except (OSError, ValueError, IndexError):
            pass
    return total


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def run_http(url: str, token: str, clients: int, n: int, long_poll: bool,
             post_wait: bool = False) -> tuple[float, list[float]]:
    """`clients` threads, `n` queries each; seconds for all, and each query's latency (submit to rows).

    `post_wait`: the POST waits for the end and carries the first page (one round trip, as
    `api.client.Client.query` does); otherwise POST, then GET (a long poll with `long_poll`,
    the tutorial's 50 ms loop without), the Coactive SDK's shapes."""
    latencies: list[float] = []
    lock = threading.Lock()

    def one(k: int) -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as c:
            for sql in queries_for(k, n):
                t0 = time.perf_counter()
                r = c.post("/api/v1/queries", json={"query": sql}, params={"wait": 30} if post_wait else None)
                r.raise_for_status()
                body = r.json()
                qid = body["query_id"]
                while body["status"] not in ("Complete", "Error", "Stopped"):
                    body = c.get(f"/api/v1/queries/{qid}", params={"wait": 30} if long_poll else None).json()
                    if body["status"] in ("Complete", "Error", "Stopped"):
                        break
                    if not long_poll:
                        time.sleep(0.05)
                if body["status"] != "Complete" or len(body["results"]["data"]) != 1:
                    raise RuntimeError(f"bad answer: {body}")
                with lock:
                    latencies.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(clients)))
    return time.perf_counter() - t0, latencies


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--queries", type=int, default=10, help="per client")
    ap.add_argument("--workers", type=int, default=2, help="server query workers")
    ap.add_argument("--lone", type=int, default=50, help="queries of the lone client")
    ap.add_argument("--lend", action="store_true", help="PIXQL_LEND_IDLE_SLOTS=true: one token may use every worker")
    ap.add_argument("--per-token", type=int, default=0,
                    help="--max-running-per-token (all clients share one token; 0: the server's default)")
    ap.add_argument("--decisions-per-s", type=float, default=5.0, help="decisions during the 'mod' run (0: skip it)")
    ap.add_argument("--decision-rows", type=int, default=100_000, help="older decisions seeded before the server starts")
    args = ap.parse_args()

    from api.cli.demo import write_demo_images
    from apiserver import Server, make_token
    from warehouse import Warehouse

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-http-"))
    photos = tmp / "photos"
    photos.mkdir()
    write_demo_images(photos)
    root = tmp / "wh"
    wh = Warehouse.open(root)
    wh.ingest([str(photos)], dataset="photos", progress=False)
    total = args.clients * args.queries

    load_before = os.getloadavg()
    for sql in queries_for(99, 20):  # warm: views bound, files in the page cache
        wh.sql(sql).fetchall()
    sdk_lat = []
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    for k in range(args.clients):
        for sql in queries_for(k, args.queries):
            q0 = time.perf_counter()
            wh.sql(sql).fetchall()
            sdk_lat.append(time.perf_counter() - q0)
    sdk_s = time.perf_counter() - t0
    sdk_cpu = (time.process_time() - cpu0) / total
    sdk_one = []
    for sql in queries_for(0, args.lone):
        q0 = time.perf_counter()
        wh.sql(sql).fetchall()
        sdk_one.append(time.perf_counter() - q0)

    def sdk_client(k: int) -> None:
        cur = wh.cursor()
        for sql in queries_for(k, args.queries):
            cur.sql(sql).fetchall()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        list(pool.map(sdk_client, range(args.clients)))
    sdk_par_s = time.perf_counter() - t0
    ids = [r[0] for r in wh.sql("SELECT coactive_image_id FROM catalog.assets ORDER BY path").fetchall()]
    if args.decision_rows:
        # Before the server starts, so its first sandbox copies them whatever the change tracking.
        wh.cursor().execute(
            "INSERT INTO catalog.moderation_decisions (seq, subject_id, subject_kind, status, reasons, "
            "decided_by, created_dt) SELECT nextval('catalog.moderation_decision_seq'), 'seeded-' || i, 'asset', "
            "'approved', '[]', 'model', now() FROM range(?) t(i)", [args.decision_rows])
    wh.close()
    token = make_token(root, "bench", "read")
    writer = make_token(root, "bench-writer", "write")

    if args.lend:
        os.environ["PIXQL_LEND_IDLE_SLOTS"] = "true"
    srv = Server(root, "--query-workers", str(args.workers), "--max-queued", str(total + 10), "--lazy-model",
                 "--max-running-per-token", str(args.per_token)).start()
    try:
        run_http(srv.url, token, 2, 2, True, post_wait=True)  # warm up: sandbox copies, connections
        # A lone client: latency without queueing, one round trip (POST ?wait) and two (POST, GET ?wait).
        cpu0 = tree_cpu(srv.proc.pid)
        one_s, one_lat = run_http(srv.url, token, 1, args.lone, True, post_wait=True)
        one_cpu = (tree_cpu(srv.proc.pid) - cpu0) / args.lone
        two_s, two_lat = run_http(srv.url, token, 1, args.lone, True)
        cpu0 = tree_cpu(srv.proc.pid)
        http_s, http_lat = run_http(srv.url, token, args.clients, args.queries, True, post_wait=True)
        http_cpu = (tree_cpu(srv.proc.pid) - cpu0) / total
        long_s, long_lat = run_http(srv.url, token, args.clients, args.queries, True)
        poll_s, poll_lat = run_http(srv.url, token, args.clients, args.queries, False)
        mod = None
        if args.decisions_per_s > 0:
            stop, made = threading.Event(), []

            def decide() -> None:
                with httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {writer}"}, timeout=60) as c:
                    k = 0
                    while not stop.wait(1 / args.decisions_per_s):
                        status = ("approved", "review", "rejected")[k % 3]
                        c.put(f"/api/v1/assets/{ids[k % len(ids)]}/moderation",
                              json={"status": status, "reason": "bench"}).raise_for_status()
                        made.append(k)
                        k += 1

            t = threading.Thread(target=decide, daemon=True)
            t.start()
            try:
                mod_s, mod_lat = run_http(srv.url, token, args.clients, args.queries, True)
            finally:
                stop.set()
                t.join(60)
            mod = (mod_s, mod_lat, len(made))
        procs = tree_rss(srv.proc.pid)
    finally:
        srv.stop()

    load_after = os.getloadavg()
    print(f"{total} queries ({args.clients} clients x {args.queries}), {args.workers} server workers, "
          f"{os.cpu_count()} cores, photos: {len(list(photos.iterdir()))}")
    print(f"load average (1, 5, 15 min): before {' '.join(f'{x:.2f}' for x in load_before)}, "
          f"after {' '.join(f'{x:.2f}' for x in load_after)}")
    print(f"{'mode':<10}{'queries/s':>10}{'p50 ms':>10}{'p99 ms':>10}")
    rows = [("sdk", sdk_s, sdk_lat), (f"sdk-{args.clients}", sdk_par_s, [float("nan")] * total),
            ("sdk-1", sum(sdk_one), sdk_one), ("http-1", one_s, one_lat), ("long-1", two_s, two_lat),
            ("http", http_s, http_lat), ("long", long_s, long_lat), ("poll", poll_s, poll_lat)]
    for name, secs, lat in rows:
        print(f"{name:<10}{len(lat) / secs:>10.1f}{pct(lat, 50) * 1000:>10.1f}{pct(lat, 99) * 1000:>10.1f}")
    if mod is not None:
        print(f"{'mod':<10}{len(mod[1]) / mod[0]:>10.1f}{pct(mod[1], 50) * 1000:>10.1f}{pct(mod[1], 99) * 1000:>10.1f}"
              f"   ({mod[2]} decisions during the run, {args.decision_rows} seeded)")
    for label, lat in (("POST ?wait", one_lat), ("POST + GET ?wait", two_lat)):
        added = (pct(lat, 50) - pct(sdk_one, 50)) * 1000
        print(f"lone client ({label}): HTTP {pct(lat, 50) * 1000:.1f} ms vs SDK {pct(sdk_one, 50) * 1000:.1f} ms "
              f"per query (p50): HTTP adds {added:.1f} ms (goal: at most 10)")
    for label, secs in (("POST ?wait", http_s), ("POST + GET ?wait", long_s)):
        print(f"{args.clients} clients x {args.queries} ({label}): HTTP {total / secs:.0f} q/s = "
              f"{total / secs / (total / sdk_s):.2f}x the SDK's {total / sdk_s:.0f} q/s one after another "
              f"(goal: at least 0.5x), {total / secs / (total / sdk_par_s):.2f}x the SDK's "
              f"{total / sdk_par_s:.0f} q/s from {args.clients} threads")
    print(f"CPU per query: SDK {sdk_cpu * 1000:.1f} ms (this process); server and its workers "
          f"{one_cpu * 1000:.1f} ms (lone client), {http_cpu * 1000:.1f} ms ({args.clients} clients)")
    print(f"mean http latency {statistics.mean(http_lat) * 1000:.1f} ms")
    print(f"server memory after the run: {' + '.join(f'{r / 2**20:.0f}' for r in procs)} MB RSS "
          f"(the server, then its query worker processes)")


if __name__ == "__main__":
    main()
