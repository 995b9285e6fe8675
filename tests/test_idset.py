"""ingest/idset.py: the compact id set behaves exactly as a Python set of strings."""
from __future__ import annotations

import uuid

import numpy as np
import pyarrow as pa

from ingest.idset import IdSet, committed_ids


def _ids(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [str(uuid.UUID(int=int.from_bytes(rng.bytes(16), "big"))) for _ in range(n)]


def test_membership_of_canonical_ids():
    ids = _ids(500)
    s = IdSet(ids)
    assert len(s) == 500
    assert all(i in s for i in ids)
    assert not any(i in s for i in _ids(200, seed=1))
    assert s.nbytes == 500 * 16  # the point of it: 16 bytes per id


def test_duplicates_are_one_member():
    ids = _ids(50)
    s = IdSet(ids + ids[:10] + pa.array(ids[:5]).to_pylist())
    assert len(s) == 50
    for i in ids[:20]:
        s.add(i)  # already in the array
    s.add(ids[0].replace("-", "-"))
    new = _ids(3, seed=7)
    for i in new + new:
        s.add(i)  # twice while pending
    assert len(s) == 53
    s.update(new + ids[:3])
    assert len(s) == 53
    assert sorted(s) == sorted(set(ids) | set(new))


def test_additions_merge_into_the_array_and_stay_members():
    base, more = _ids(3000), _ids(5000, seed=2)
    s = IdSet(base)
    for i in more:  # crosses the pending threshold (1024) several times
        s.add(i)
    assert len(s._pending) <= 1024 + 1
    assert len(s) == 8000 and s.nbytes > 3000 * 16  # merges happened
    assert all(i in s for i in base + more)
    assert list(s) == sorted(base + more)  # iteration: the array order is the text order
    assert np.all(np.diff(s._hi.astype(np.float64)) >= 0)


def test_update_from_generators_and_arrow():
    a, b, c = _ids(10), _ids(10, seed=3), _ids(10, seed=4)
    s = IdSet()
    s.update(x for x in a)
    s.update(pa.chunked_array([pa.array(b[:5]), pa.array(b[5:])]))
    s.update(pa.array(c, pa.large_string()))
    assert len(s) == 30 and all(i in s for i in a + b + c)


def test_empty():
    s = IdSet()
    assert len(s) == 0 and list(s) == []
    assert _ids(1)[0] not in s and "" not in s and None not in s
    assert s.contains([]).shape == (0,)
    assert not s.contains(_ids(3)).any()
    s.update([])
    assert len(s) == 0
    assert len(IdSet(pa.chunked_array([], pa.string()))) == 0


def test_ids_not_in_canonical_form_are_kept_as_strings():
    canon = _ids(3)
    odd = [canon[0].upper(), "{" + canon[1] + "}", canon[2].replace("-", ""), "a1", "",
           canon[0][:-1] + "g", canon[0][:8] + "_" + canon[0][9:], " " + canon[0][1:],
           canon[0][:24] + "+" + canon[0][25:]]
    s = IdSet(canon[:1] + odd[:2])
    assert canon[0] in s and canon[0].upper() in s and "{" + canon[1] + "}" in s
    assert canon[1] not in s  # the braced form is another string
    mixed = "".join(ch.upper() if k % 2 else ch for k, ch in enumerate(canon[0]))
    assert mixed != canon[0] and mixed not in s  # case is part of the id, as in the catalog
    for x in odd[2:]:
        assert x not in s
        s.add(x)
        assert x in s
    assert canon[2] not in s and canon[0] in s
    assert len(s) == 1 + len(odd)
    assert set(s) == {canon[0], *odd}


def test_vectorised_contains_equals_set_membership():
    members = _ids(2000)
    odd = ["x1", members[5].upper()]
    s = IdSet(members[:1500] + odd[:1])
    for i in members[1500:1800]:
        s.add(i)  # pending when contains is called
    probe = members + _ids(100, seed=9) + odd + [None]
    ref = set(members[:1800]) | {odd[0]}
    got = s.contains(pa.array(probe, pa.string()))
    assert got.tolist() == [p in ref for p in probe]


def test_ids_sharing_their_high_half():
    """Ids equal in their first 16 hex digits: found, told apart and kept sorted."""
    hi = "0123abcd-0000-4000"
    same = [f"{hi}-8000-{k:012x}" for k in (5, 1, 9, 3)]
    s = IdSet(same[:2] + _ids(100))
    for x in same[2:]:
        s.add(x)
    absent = f"{hi}-8000-{7:012x}"
    assert all(x in s for x in same) and absent not in s
    assert s.contains(same + [absent]).tolist() == [True] * 4 + [False]
    s.update([absent])
    assert absent in s and len(s) == 105
    assert list(s) == sorted(s)


def test_committed_ids_equal_the_catalog(photo_warehouse):
    from warehouse import catalog

    con = photo_warehouse.cursor()
    dataset = con.execute("SELECT dataset FROM catalog.assets LIMIT 1").fetchone()[0]
    enc = catalog.dataset_encoder(con, dataset)
    for by in (None, enc):
        ref = set(catalog.asset_id_column(con, dataset, embedded_by=by).to_pylist())
        got = committed_ids(con, dataset, embedded_by=by)
        assert ref and set(got) == ref and len(got) == len(ref)
    assert len(committed_ids(con, "no-such-dataset")) == 0


def test_committed_ids_at_some_paths_are_the_catalogs_ids_there(photo_warehouse):
    from warehouse import catalog

    con = photo_warehouse.cursor()
    dataset = con.execute("SELECT dataset FROM catalog.assets LIMIT 1").fetchone()[0]
    enc = catalog.dataset_encoder(con, dataset)
    paths = [r[0] for r in con.execute("SELECT DISTINCT path FROM catalog.assets WHERE dataset = ? "
                                       "ORDER BY path LIMIT 2", [dataset]).fetchall()]
    ref = {r[0] for r in con.execute("SELECT coactive_image_id FROM catalog.assets WHERE dataset = ? "
                                     "AND path IN (SELECT unnest(?))", [dataset, paths]).fetchall()}
    for by in (None, enc):
        got = committed_ids(con, dataset, embedded_by=by, paths=paths + ["/no/such/file.jpg"])
        assert ref and set(got) == ref
    assert len(committed_ids(con, dataset, embedded_by="no-such-encoder", paths=paths)) == 0
    assert len(committed_ids(con, dataset, paths=[])) == 0
