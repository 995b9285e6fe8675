"""The result cache: moderation results of content-addressed items in `catalog.moderation_cache`.

A result is kept by the item's content hash, the policy's fingerprint and the
model state (the category concepts' versions and the similar-image lists), for
`ttl_s` seconds (24 h by default), so a new concept version, a feedback entry
or another policy misses.  The TTL holds on disk too: expired rows (past their
`expires_dt`, or older than the current `ttl_s` if it was lowered) are deleted
from `catalog.moderation_cache` when the cache is made (server start) and at
most once a minute as results are stored, not only skipped by `get`.  Only paths, URLs and uploads are cached: an id names
a row whose result is computed from the warehouse anyway.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import timedelta

from warehouse import catalog

from .. import taxonomy
from ..policy import Policy

DEFAULT_TTL_S = 24 * 3600
PURGE_EVERY_S = 60.0


def state_token(con) -> str:
    """What a cached result depends on besides bytes and policy: category concept versions and the lists."""
    concepts = con.execute(
        "SELECT name, latest_version FROM catalog.concepts WHERE list_contains(?, name) ORDER BY name",
        [list(taxonomy.CATEGORIES)]).fetchall()
    fb = con.execute("SELECT count(*), max(created_dt) FROM catalog.moderation_feedback").fetchone()
    return hashlib.sha256(json.dumps([concepts, fb], default=str).encode()).hexdigest()[:16]


def cache_key(sha: str, pol: Policy, state: str) -> str:
    return hashlib.sha256(f"{sha}|{pol.fingerprint()}|{state}".encode()).hexdigest()


class ResultCache:
    """One warehouse's cache, with hit and miss counts since this object was made."""

    def __init__(self, wh, ttl_s: float = DEFAULT_TTL_S):
        self.wh = wh
        self.ttl_s = ttl_s
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._purged = 0.0
        if not getattr(wh, "read_only", False):
            self.purge_expired()

    def _cutoffs(self):
        now = catalog.now()
        return now, now - timedelta(seconds=max(self.ttl_s, 0))

    def purge_expired(self) -> int:
        """Delete the entries the TTL has ended (by their own expiry or the current TTL); return how many."""
        now, oldest = self._cutoffs()
        with self.wh.write_lock:
            rows = self.wh.cursor().execute(
                "DELETE FROM catalog.moderation_cache WHERE expires_dt <= ? OR created_dt <= ? RETURNING 1",
                [now, oldest]).fetchall()
        self._purged = time.monotonic()
        return len(rows)

    def get(self, con, sha: str, pol: Policy, state: str) -> dict | None:
        now, oldest = self._cutoffs()
        row = con.execute("SELECT result FROM catalog.moderation_cache WHERE cache_key = ? AND expires_dt > ?"
                          " AND created_dt > ?", [cache_key(sha, pol, state), now, oldest]).fetchone()
        with self._lock:
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def put(self, res: dict, pol: Policy, state: str) -> None:
        if self.ttl_s <= 0 or not res.get("sha256"):
            return
        now = catalog.now()
        with self.wh.write_lock:
            self.wh.cursor().execute(
                "INSERT OR REPLACE INTO catalog.moderation_cache VALUES (?, ?, ?, ?, ?, ?)",
                [cache_key(res["sha256"], pol, state), res["sha256"], pol.spec(),
                 json.dumps(res, default=str), now, now + timedelta(seconds=self.ttl_s)])
        if time.monotonic() - self._purged >= PURGE_EVERY_S:
            self.purge_expired()

    def stats(self) -> dict:
        con = self.wh.cursor()
        total, live, oldest = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE expires_dt > ?), min(created_dt) FROM catalog.moderation_cache",
            [catalog.now()]).fetchone()
        with self._lock:
            hits, misses = self.hits, self.misses
        return {"entries": total, "live_entries": live, "expired_entries": total - live, "hits": hits,
                "misses": misses, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
                "ttl_seconds": self.ttl_s, "oldest_dt": oldest}

    def clear(self, sha256: str | None = None, expired_only: bool = False) -> int:
        sql, args = "DELETE FROM catalog.moderation_cache WHERE true", []
        if sha256:
            sql += " AND sha256 = ?"
            args.append(sha256)
        if expired_only:
            sql += " AND expires_dt <= ?"
            args.append(catalog.now())
        with self.wh.write_lock:
            rows = self.wh.cursor().execute(sql + " RETURNING 1", args).fetchall()
        return len(rows)
