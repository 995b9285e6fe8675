"""catalog.insert: many rows go in as one Arrow table, with the same rows as executemany wrote."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import duckdb
import pytest

from warehouse import Warehouse, catalog


def _rows(n, start=0, sha=lambda i: f"{i:064x}"):
    t0 = datetime(2026, 1, 2, 3, 4, 5, 123456)
    return [dict(coactive_image_id=f"id-{i:05d}", dataset="d", path=f"/p/{i}.jpg", sha256=sha(i),
                 media_type="image", part="datasets/d/assets/part-x.parquet", created_dt=t0 + timedelta(seconds=i))
            for i in range(start, start + n)]


def _read(con, lo, hi):
    return con.execute("SELECT coactive_image_id, dataset, path, sha256, media_type, part, created_dt "
                       "FROM catalog.assets WHERE coactive_image_id BETWEEN ? AND ? ORDER BY 1",
                       [f"id-{lo:05d}", f"id-{hi - 1:05d}"]).fetchall()


@pytest.fixture
def con(tmp_path):
    wh = Warehouse.open(tmp_path / "wh")
    yield wh.cursor()
    wh.close()


def test_many_rows_equal_what_executemany_writes(con):
    few, many = _rows(catalog.ARROW_INSERT_ROWS - 1), _rows(200, start=1000, sha=lambda i: None if i % 3 else "ab")
    catalog.insert(con, "assets", few)  # below the threshold: executemany
    catalog.insert(con, "assets", many)  # Arrow
    expect = lambda rows: [tuple(r.values()) for r in rows]  # noqa: E731
    assert _read(con, 0, len(few)) == expect(few)
    assert _read(con, 1000, 1200) == expect(many)


def test_all_null_column_and_rows_in_a_transaction(con):
    rows = _rows(50, sha=lambda i: None)
    con.execute("BEGIN")
    catalog.insert(con, "assets", rows)
    con.execute("ROLLBACK")
    assert _read(con, 0, 50) == []
    catalog.insert(con, "assets", rows)
    assert [r[3] for r in _read(con, 0, 50)] == [None] * 50


def test_a_duplicate_key_fails_the_whole_insert(con):
    rows = _rows(40)
    catalog.insert(con, "assets", rows[:1])
    with pytest.raises(duckdb.ConstraintException):
        catalog.insert(con, "assets", rows)
    assert len(_read(con, 0, 40)) == 1


def test_rows_arrow_cannot_type_fall_back(con):
    mixed = _rows(40)
    mixed[5]["sha256"] = 12345  # a number among strings: executemany casts it as before
    catalog.insert(con, "assets", mixed)
    assert _read(con, 5, 6)[0][3] == "12345"
    aware = _rows(40, start=100)
    for r in aware:
        r["created_dt"] = r["created_dt"].replace(tzinfo=timezone.utc)
    catalog.insert(con, "assets", aware)
    assert len(_read(con, 100, 140)) == 40


def test_upserts_keep_executemany(con):
    rows = _rows(40)
    catalog.insert(con, "assets", rows)
    again = [dict(r, path="/new" + r["path"]) for r in rows + rows[:3]]  # a key twice in one call
    catalog.insert(con, "assets", again, or_replace=True)
    assert all(r[2].startswith("/new/") for r in _read(con, 0, 40))
