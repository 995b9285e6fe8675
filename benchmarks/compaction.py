"""Compaction at scale: a warehouse ingested as 2,000 small parts, before and after `compact`.

    nice -n 10 /work/venv/bin/python benchmarks/compaction.py [--n 1000000] [--parts 2000] [--dim 512]
                                                             [--delete 10000] [--root DIR]

Builds the synthetic warehouse of benchmarks/concepts.py (`build`: parts written
as ingest writes them, FLOAT[dim] unit vectors) in `--parts` parts, defines the
tutorial's seven concepts with materialised score caches, then prints, before
and after compaction: the time to rebuild every view (what each catalog write
pays), the longest view and part-list macro, and the Coactive tutorial's three
queries (median of 3, warm); then the ratios before/after and the compaction
time.  Answers are checked equal.  Then it times `Warehouse.delete` of 1 asset
and of `--delete` (10,000) assets spread over every part of the compacted
warehouse (a hash order, so every part is rewritten), and checks the count.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.concepts import CONCEPTS, QUERIES, build, heads, timed  # noqa: E402

TUTORIAL = QUERIES[:3]


def view_build(wh) -> float:
    def rebuild():
        with wh.transaction(views=True):
            pass

    return timed(rebuild, reps=3)[0]


def sizes(wh) -> tuple[int, int]:
    """(longest view SQL, longest macro definition) in characters."""
    v = wh.sql("SELECT max(length(sql)) FROM duckdb_views() WHERE NOT internal").fetchone()[0]
    m = wh.sql("SELECT max(length(macro_definition)) FROM duckdb_functions() WHERE schema_name = 'pixql_internal'"
               " AND function_type = 'macro'").fetchone()[0]
    return int(v or 0), int(m or 0)


def measure(wh, label: str) -> dict:
    out = {"views": view_build(wh), "sizes": sizes(wh),
           "parts": wh.sql("SELECT count(*) FROM catalog.parts").fetchone()[0]}
    print(f"{label}: {out['parts']:,} parts; view rebuild {out['views']:.2f}s; longest view "
          f"{out['sizes'][0]:,} chars, longest part-list macro {out['sizes'][1]:,} chars")
    for title, _, sql in TUTORIAL:
        t, rows = timed(lambda: wh.sql(sql).fetchall(), reps=3)
        out[title] = (t, rows)
        print(f"  {title:<44} {1000 * t:8.0f} ms")
    return out


def delete_timings(wh, n_many: int) -> None:
    total = wh.sql("SELECT count(*) FROM catalog.assets").fetchone()[0]
    ids = [r[0] for r in wh.sql(f"SELECT coactive_image_id FROM catalog.assets ORDER BY hash(coactive_image_id) "
                                f"LIMIT {n_many + 1}").fetchall()]
    parts = wh.sql("SELECT count(*) FROM catalog.parts").fetchone()[0]
    for label, batch in (("1 asset", ids[:1]), (f"{n_many:,} assets", ids[1:])):
        t, report = timed(lambda: wh.delete(image_id=batch, reason="benchmark"))
        assert report.matched["images"] == len(batch), report.matched
        total -= len(batch)
        assert wh.sql("SELECT count(*) FROM coactive_table").fetchone()[0] == total
        print(f"delete {label} from {total + len(batch):,} in {parts} parts: {t:.2f}s "
              f"({report.removed.get('parts_rewritten', 0)} parts rewritten)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=2000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--delete", type=int, default=10_000, help="assets in the large delete")
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args()
    from concepts import registry

    tmp = Path(tempfile.mkdtemp(prefix="pixql-bench-compaction-")) if args.root is None else args.root
    part_rows = -(-args.n // args.parts)
    try:
        print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
        if (tmp / "pixql.duckdb").exists():  # --root of an earlier run: reuse what it built
            from warehouse import Warehouse

            wh, encoder = Warehouse.open(tmp), f"synthetic-{args.dim}"
            n, parts = wh.sql("SELECT count(*), count(DISTINCT part) FROM catalog.assets").fetchone()
            print(f"reusing {n:,} assets x FLOAT[{args.dim}] in {parts:,} parts at {tmp}")
        else:
            t, (wh, encoder, _) = timed(lambda: build(tmp, args.n, args.dim, part_rows))
            print(f"built {args.n:,} assets x FLOAT[{args.dim}] in {args.parts:,} parts of {part_rows} rows "
                  f"in {t:.1f}s")
        have = {r[0] for r in wh.sql("SELECT name FROM catalog.concepts").fetchall()}
        for name, h in heads(encoder, args.dim).items():
            if name not in have:
                registry.create_from_head(wh, name, h, materialize=False)
        t, _ = timed(lambda: registry.materialize(wh, CONCEPTS))
        print(f"materialised {len(CONCEPTS)} concept caches in {t:.1f}s")
        before = measure(wh, "before")
        t, reports = timed(lambda: wh.compact(part_rows=max(part_rows + 1, 100_000)))
        print(f"compaction: {t:.1f}s; " + "; ".join(str(r) for r in reports))
        after = measure(wh, "after")
        for title, _, sql in TUTORIAL:
            same = before[title][1] == after[title][1] or ("ORDER BY" not in sql and
                                                          len(before[title][1]) == len(after[title][1]))
            assert same, f"{title}: answers differ after compaction"
        print()
        print(f"ratios before/after: view rebuild {before['views'] / after['views']:.1f}x, " + ", ".join(
            f"{title.split()[0]} {before[title][0] / after[title][0]:.1f}x" for title, _, _ in TUTORIAL))
        print(f"load average: {os.getloadavg()[0]:.2f}")
        delete_timings(wh, args.delete)
        print(f"load average: {os.getloadavg()[0]:.2f}")
        wh.close()
    finally:
        if args.root is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
