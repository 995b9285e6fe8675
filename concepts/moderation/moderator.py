"""The moderator: items in, `approved` | `rejected` | `review` out, every decision kept in the catalog.

    m = Moderator(wh)
    m.moderate([Item(path="upload.jpg"), Item(coactive_image_id=...)], policy="strict")
    m.override(asset_id, "approved", comment="art, not gore", user="alice")
    m.feedback(Item(coactive_image_id=...), "block", categories=["weapons"])
    m.queue(status="review")

Owns the order of one moderation run and nothing else: resolve items to
subjects (`subjects`), answer content-addressed items from the cache (`cache`),
score the frames (`scoring`) and find look-alikes (`similarity`), judge
(`verdicts`), record the model's decision (`decisions`) and attach any
person's decision.  The other methods are the front door to those modules.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable

from ingest.sources import PLAIN, FileAccess
from warehouse import tombstones
from warehouse.errors import Blocked

from .. import policy as policies
from . import analyzed
from .. import taxonomy
from ..policy import Policy
from . import decisions, feedback as feedback_mod, queue as queue_mod, scoring, similarity, verdicts
from .cache import DEFAULT_TTL_S, ResultCache, state_token
from .decisions import PENDING, STATUSES
from .subjects import DEFAULT_DATASET, Item, ModerationNotFound, Subject, Subjects, error_result

MAX_SYNC_ITEMS = 50


class Moderator:
    def __init__(self, wh, dataset: str = DEFAULT_DATASET, cache_ttl_s: float = DEFAULT_TTL_S,
                 fetch: Callable[[str], tuple[bytes, str]] | None = None, files: FileAccess = PLAIN):
        """`fetch(url) -> (bytes, file name)` downloads URL items (None: URL items are refused);
        `files` opens path items and the files ingested for them."""
        self.wh = wh
        self.subjects = Subjects(wh, dataset, fetch, files)
        self.cache = ResultCache(wh, cache_ttl_s)
        self._concepts_lock = threading.Lock()

    @property
    def dataset(self) -> str:
        return self.subjects.dataset

    @property
    def cache_ttl_s(self) -> float:
        return self.cache.ttl_s

    @property
    def hits(self) -> int:
        return self.cache.hits

    @property
    def misses(self) -> int:
        return self.cache.misses

    # -- moderation ----------------------------------------------------------------------
    def moderate(self, items: list[Item], policy: str | dict | Policy | None = None, user: str | None = None,
                 task_id: str | None = None, use_cache: bool = True, dataset: str | None = None) -> dict:
        con = self.wh.cursor()
        pol = policy if isinstance(policy, Policy) else policies.resolve(con, policy)
        self.ensure_taxonomy()
        state = state_token(con)
        results: list[dict | None] = [None] * len(items)
        subjects: dict[int, Subject] = {}
        to_ingest: dict[int, tuple[Path, str]] = {}
        for i, it in enumerate(items):
            try:
                if it.coactive_image_id or it.coactive_video_id:
                    subjects[i] = self.subjects.by_id(con, it)
                    continue
                path, sha = self.subjects.intake(it)
                try:  # erased and blocked: this item's error says why, and its upload goes
                    tombstones.check(con, sha)
                except Blocked:
                    if isinstance(path, Path) and path.is_relative_to(self.wh.root / "uploads" / "moderation"):
                        path.unlink(missing_ok=True)
                    raise
                if use_cache:
                    hit = self.cache.get(con, sha, pol, state)
                    if hit is not None:
                        results[i] = self._finish(con, hit, i, it, cached=True)
                        continue
                found = self.subjects.by_path(con, path, sha)
                if found is not None:
                    subjects[i] = found
                else:
                    to_ingest[i] = (path, sha)
            except (ValueError, OSError, ModerationNotFound) as e:
                results[i] = error_result(i, it, e)
        if to_ingest:
            self.subjects.ingest(con, to_ingest, subjects, results, items, dataset)
            if self.ensure_taxonomy():
                state = state_token(con)
        if subjects:
            ids = sorted({f for s in subjects.values() for f, _ in s.frames})
            if analyzed.ensure(self.wh, ids):  # open_nsfw / NudeNet on frames that lack them
                con = self.wh.cursor()
            scores = self.scores(con, ids)
            similar = similarity.most_similar(con, self.wh.root, ids)
            for i, s in subjects.items():
                res = verdicts.judge(s, scores, similar, pol)
                decisions.record(self.wh, res["subject_id"], res["subject_kind"], res["model_status"],
                                 res["reasons"], pol, "model", task_id=task_id)
                it = items[i]
                if it.content_addressed:
                    self.cache.put(res, pol, state)
                results[i] = self._finish(con, res, i, it, cached=False)
        counts = {s: 0 for s in (*STATUSES, "error")}
        for r in results:
            counts[r["status"]] += 1
        return {
            "policy": {"name": pol.name, "version": pol.version, "spec": pol.spec(), "inline": pol.inline},
            "total": len(results),
            "counts": counts,
            "unscored_categories": self.unscored(con),
            "unreliable_categories": scoring.unreliable(con),
            "results": results,
        }

    @staticmethod
    def _finish(con, res: dict, index: int, it: Item, cached: bool) -> dict:
        out = decisions.with_override(con, res)
        out.update(index=index, id=it.id, input=it.describe(), cached=cached, error=None)
        return out

    def ensure_taxonomy(self) -> list[str]:
        if self.wh.read_only:
            return []
        with self._concepts_lock:
            return taxonomy.ensure_concepts(self.wh)

    def unscored(self, con=None) -> list[str]:
        return scoring.unscored(con or self.wh.cursor())

    def scores(self, con, asset_ids: list[str]) -> dict[str, dict[str, float | None]]:
        """Per asset, every category's probability (None where nothing scores it)."""
        return scoring.scores(con, self.wh.root, asset_ids)

    def intake(self, it: Item) -> tuple[Path, str]:
        """(stored path, sha256) of a path, URL or upload item (uploads are written to disk)."""
        return self.subjects.intake(it)

    # -- decisions ------------------------------------------------------------------------
    def override(self, subject_id: str, status: str, comment: str | None = None, user: str | None = None) -> dict:
        """A moderator's decision on an asset or video; it outranks every model decision, now and later."""
        decisions.check_status(status)
        kind = self.subjects.kind_of(self.wh.cursor(), subject_id)
        decisions.record(self.wh, subject_id, kind, status, [{"comment": comment}] if comment else [], None,
                         "user", user=user, comment=comment)
        return self.decision(subject_id)

    def mark_pending(self, items: list[Item], task_id: str) -> int:
        """Stored assets and videos queued for an asynchronous run show `pending` until it decides."""
        con = self.wh.cursor()
        n = 0
        for it in items:
            sid = it.coactive_image_id or it.coactive_video_id
            if not sid:
                continue  # files: no row until the task ingests them
            try:
                kind = self.subjects.kind_of(con, sid)
            except ModerationNotFound:
                continue  # the task reports it as an error item
            decisions.record(self.wh, sid, kind, PENDING, [], None, "model", task_id=task_id)
            n += 1
        return n

    def decision(self, subject_id: str) -> dict:
        """The current status of an asset or video (override first) with its history, newest first."""
        con = self.wh.cursor()
        return decisions.history(con, subject_id, self.subjects.kind_of(con, subject_id))

    def queue(self, status: str | None = None, offset: int = 0, limit: int = 50, dataset: str | None = None) -> dict:
        """Assets and videos by their current status, newest decision first (the moderation queue)."""
        return queue_mod.page(self.wh.cursor(), status, offset, limit, dataset)

    # -- feedback -------------------------------------------------------------------------
    def feedback(self, it: Item, verdict: str, categories: list[str] | None = None, user: str | None = None,
                 comment: str | None = None) -> dict:
        """Put an image on the block or pass list; categories also become concept labels."""
        return feedback_mod.give(self.wh, self.subjects, it, verdict, categories, user, comment)

    def remove_feedback(self, asset_id: str) -> bool:
        return similarity.remove(self.wh, asset_id)

    def feedback_list(self, verdict: str | None = None) -> list[dict]:
        return similarity.listed(self.wh.cursor(), verdict)

    # -- cache ----------------------------------------------------------------------------
    def cache_stats(self) -> dict:
        return self.cache.stats()

    def clear_cache(self, sha256: str | None = None, expired_only: bool = False) -> int:
        return self.cache.clear(sha256, expired_only)
