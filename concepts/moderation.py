"""Moderation: items in, `approved` | `rejected` | `review` out, every decision kept in the catalog.

    m = Moderator(wh)
    m.moderate([Item(path="upload.jpg"), Item(coactive_image_id=...)], policy="strict")
    m.override(asset_id, "approved", comment="art, not gore", user="alice")
    m.feedback(Item(coactive_image_id=...), "block", categories=["weapons"])
    m.queue(status="review")

What this module owns:

* **Intake**: paths, URLs and uploaded bytes are hashed; files not yet in the
  warehouse are ingested (dataset `moderation` unless told) so every decision
  is about a row of `coactive_table`.  URLs and uploads are kept under
  `<root>/uploads/moderation/` by content hash, so the same bytes are one asset.
* **Scores**: each category's own head (its concept's newest version, or its
  built-in definition) per frame; parents per `taxonomy.combine`.  Categories
  with no head anywhere are listed as `unscored`, never read as 0.
* **Verdicts**: a score at or over the policy's threshold rejects; within the
  review band below it sends to review.  A video's verdict is its worst
  keyframe's.  Output per frame in Hive's shape `{time, classes: [{class, score}]}`.
* **Similar-image lists** (Alibaba's feedback): an asset marked block/pass is
  compared by cosine similarity of stored `imagenet-lite0` features; an item at
  or above the policy's `similarity` takes the listed verdict with the listed
  asset as the reason (the most similar listed asset wins).
* **Decisions**: one row per verdict in `catalog.moderation_decisions`
  (decided_by `model` or `user`).  A manual override outranks every model
  decision, so re-moderating never undoes it; responses show both.
* **Cache**: results of content-addressed items (paths, URLs, uploads) by
  content hash, policy fingerprint and model state (category concept versions
  and the similar-image lists), for `cache_ttl_s` (24 h by default).
"""
from __future__ import annotations

import hashlib
import io
import json
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np

from warehouse import catalog
from warehouse.storage import atomic_write_bytes

from . import policy as policies
from . import taxonomy
from .policy import Policy

STATUSES = ("approved", "review", "rejected")
PENDING = "pending"  # queued for an asynchronous run, not decided yet
SEVERITY = {"approved": 0, "review": 1, "rejected": 2}
VERDICTS = {"block": "rejected", "pass": "approved"}
DEFAULT_DATASET = "moderation"
SIM_ENCODER, SIM_COLUMN, SIM_DIM = taxonomy.BUILTIN_ENCODER, "features", 1280
MAX_SYNC_ITEMS = 50
DEFAULT_TTL_S = 24 * 3600
VIDEO_SNIFF = {b"ftyp": ".mp4", b"\x1aE\xdf\xa3": ".webm"}


class ModerationNotFound(LookupError):
    """An asset, video or task that does not exist (HTTP 404)."""


@dataclass
class Item:
    """One thing to moderate: exactly one of path, url, data (uploaded bytes), an asset id or a video id."""

    path: str | None = None
    url: str | None = None
    coactive_image_id: str | None = None
    coactive_video_id: str | None = None
    data: bytes | None = field(default=None, repr=False)
    filename: str | None = None
    id: str | None = None  # the caller's own reference, echoed back

    def __post_init__(self):
        given = [k for k in ("path", "url", "coactive_image_id", "coactive_video_id", "data")
                 if getattr(self, k) not in (None, "")]
        if len(given) != 1:
            raise ValueError(
                "each item needs exactly one of path, url, coactive_image_id, coactive_video_id or an upload"
                + (f" (got {', '.join(given)})" if given else ""))

    def describe(self) -> dict:
        if self.data is not None:
            return {"upload": self.filename or "upload", "bytes": len(self.data)}
        for k in ("path", "url", "coactive_image_id", "coactive_video_id"):
            if getattr(self, k):
                return {k: getattr(self, k)}
        return {}


@dataclass
class Subject:
    """What a decision is about: an image asset (one frame) or a video (its keyframes)."""

    kind: str  # 'asset' | 'video'
    subject_id: str
    frames: list[tuple[str, int]]  # (coactive_image_id, time_ms)
    sha256: str | None = None
    path: str | None = None
    media_type: str = "image"
    coactive_video_id: str | None = None


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _suffix(data: bytes, filename: str | None) -> str:
    suffix = Path(filename or "").suffix.lower()
    if suffix and len(suffix) <= 6:
        return suffix
    for magic, ext in VIDEO_SNIFF.items():
        if magic in data[:12]:
            return ext
    try:
        from PIL import Image

        fmt = Image.open(io.BytesIO(data)).format
        return {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif", "WEBP": ".webp", "BMP": ".bmp",
                "TIFF": ".tif", "MPO": ".jpg"}.get(fmt, ".bin")
    except Exception:  # not an image: ingest will say so with its own reason
        return ".bin"


def _round(x: float) -> float:
    return round(float(x), 4)


def evaluate(scores: dict[str, float | None], pol: Policy) -> tuple[str, list[dict]]:
    """(status, triggered categories) of one frame under a policy."""
    triggered = []
    for cat, threshold in pol.thresholds().items():
        s = scores.get(cat)
        if s is None:
            continue
        if s >= threshold:
            action = "reject"
        elif pol.review_band > 0 and s >= threshold - pol.review_band:
            action = "review"
        else:
            continue
        triggered.append({"category": cat, "parent": taxonomy.parent(cat), "score": _round(s),
                          "threshold": threshold, "action": action})
    triggered.sort(key=lambda t: (t["action"] != "reject", -t["score"]))
    if any(t["action"] == "reject" for t in triggered):
        return "rejected", triggered
    return ("review" if triggered else "approved"), triggered


class Moderator:
    def __init__(self, wh, dataset: str = DEFAULT_DATASET, cache_ttl_s: float = DEFAULT_TTL_S,
                 max_download_bytes: int = 200 * 1024 * 1024, url_timeout_s: float = 30.0):
        self.wh = wh
        self.dataset = dataset
        self.cache_ttl_s = cache_ttl_s
        self.max_download_bytes = max_download_bytes
        self.url_timeout_s = url_timeout_s
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._concepts_lock = threading.Lock()

    # -- moderation ----------------------------------------------------------------------
    def moderate(self, items: list[Item], policy: str | dict | Policy | None = None, user: str | None = None,
                 task_id: str | None = None, use_cache: bool = True, dataset: str | None = None) -> dict:
        con = self.wh.cursor()
        pol = policy if isinstance(policy, Policy) else policies.resolve(con, policy)
        self.ensure_taxonomy()
        state = self._state_token(con)
        results: list[dict | None] = [None] * len(items)
        subjects: dict[int, Subject] = {}
        to_ingest: dict[int, tuple[Path, str]] = {}
        for i, it in enumerate(items):
            try:
                if it.coactive_image_id or it.coactive_video_id:
                    subjects[i] = self._subject_by_id(con, it)
                    continue
                path, sha = self._intake(it)
                if use_cache:
                    hit = self._cache_get(con, sha, pol, state)
                    if hit is not None:
                        results[i] = self._finish(con, hit, i, it, cached=True)
                        continue
                found = self._subject_by_path(con, path, sha)
                if found is not None:
                    subjects[i] = found
                else:
                    to_ingest[i] = (path, sha)
            except (ValueError, OSError, ModerationNotFound) as e:
                results[i] = self._error(i, it, e)
        if to_ingest:
            self._ingest(con, to_ingest, subjects, results, items, dataset or self.dataset)
            if self.ensure_taxonomy():
                state = self._state_token(con)
        if subjects:
            computed = self._decide(con, subjects, pol)
            for i, res in computed.items():
                self._store(res, pol, task_id)
                it = items[i]
                if it.data is not None or it.path or it.url:
                    self._cache_put(con, res, pol, state)
                results[i] = self._finish(con, res, i, it, cached=False)
        counts = {s: 0 for s in (*STATUSES, "error")}
        for r in results:
            counts[r["status"]] += 1
        return {
            "policy": {"name": pol.name, "version": pol.version, "spec": pol.spec()},
            "total": len(results),
            "counts": counts,
            "unscored_categories": self.unscored(con),
            "results": results,
        }

    def ensure_taxonomy(self) -> list[str]:
        if self.wh.read_only:
            return []
        with self._concepts_lock:
            return taxonomy.ensure_concepts(self.wh)

    def unscored(self, con=None) -> list[str]:
        con = con or self.wh.cursor()
        have = {r[0] for r in con.execute(
            "SELECT name FROM catalog.concepts WHERE latest_version > 0 AND list_contains(?, name)",
            [list(taxonomy.CATEGORIES)]).fetchall()}
        return [c for c in taxonomy.CATEGORIES
                if c not in have and not any(ch in have for ch in taxonomy.children(c))]

    # -- intake ---------------------------------------------------------------------------
    def _intake(self, it: Item) -> tuple[Path, str]:
        if it.path:
            p = Path(it.path).expanduser()
            if not p.is_file():
                raise ValueError(f"no such file on the server: {it.path}")
            return p.resolve(), _sha256_file(p)
        data, name = (it.data, it.filename) if it.data is not None else self._download(it.url)
        if not data:
            raise ValueError("empty upload (0 bytes)")
        sha = hashlib.sha256(data).hexdigest()
        dest = self.wh.root / "uploads" / "moderation" / sha[:2] / (sha + _suffix(data, name))
        if not dest.is_file():
            atomic_write_bytes(data, dest)
        return dest.resolve(), sha

    def _download(self, url: str) -> tuple[bytes, str]:
        import httpx
        from urllib.parse import urlparse

        u = urlparse(url)
        if u.scheme not in ("http", "https") or not u.netloc:
            raise ValueError(f"url must be http(s)://host/...: {url!r}")
        buf = bytearray()
        try:
            with httpx.stream("GET", url, timeout=self.url_timeout_s, follow_redirects=True) as r:
                if r.status_code != 200:
                    raise ValueError(f"fetching {url} gave HTTP {r.status_code}")
                for chunk in r.iter_bytes():
                    buf += chunk
                    if len(buf) > self.max_download_bytes:
                        raise ValueError(f"{url} is larger than {self.max_download_bytes} bytes")
        except httpx.HTTPError as e:
            raise ValueError(f"cannot fetch {url}: {type(e).__name__}: {e}") from None
        return bytes(buf), u.path.rsplit("/", 1)[-1]

    def _subject_by_id(self, con, it: Item) -> Subject:
        if it.coactive_video_id:
            return self._video_subject(con, it.coactive_video_id)
        row = con.execute(
            "SELECT coactive_image_id, path, sha256, media_type, coactive_video_id, keyframe_time_ms "
            "FROM pixql_internal.assets WHERE coactive_image_id = ?", [it.coactive_image_id]).fetchone()
        if row is None:
            raise ModerationNotFound(f"unknown asset {it.coactive_image_id!r}")
        aid, path, sha, media, vid, t = row
        return Subject("asset", aid, [(aid, int(t or 0))], sha, path, media, vid)

    def _video_subject(self, con, video_id: str) -> Subject:
        v = con.execute("SELECT path, sha256 FROM catalog.videos WHERE coactive_video_id = ?", [video_id]).fetchone()
        if v is None:
            raise ModerationNotFound(f"unknown video {video_id!r}")
        frames = con.execute(
            "SELECT coactive_image_id, keyframe_time_ms FROM pixql_internal.assets WHERE coactive_video_id = ? "
            "ORDER BY keyframe_index", [video_id]).fetchall()
        if not frames:
            raise ValueError(f"video {video_id} has no decoded keyframes")
        return Subject("video", video_id, [(f, int(t or 0)) for f, t in frames], v[1], v[0], "video", video_id)

    def _subject_by_path(self, con, path: Path, sha: str) -> Subject | None:
        row = con.execute(
            "SELECT coactive_video_id FROM catalog.videos WHERE path = ? AND sha256 = ? "
            "ORDER BY dataset = ? DESC LIMIT 1", [str(path), sha, self.dataset]).fetchone()
        if row:
            return self._video_subject(con, row[0])
        row = con.execute(
            "SELECT a.coactive_image_id FROM catalog.assets a JOIN catalog.embeddings e "
            "ON e.coactive_image_id = a.coactive_image_id AND e.encoder = ? "
            "WHERE a.path = ? AND a.sha256 = ? AND a.media_type = 'image' ORDER BY a.dataset = ? DESC LIMIT 1",
            [SIM_ENCODER, str(path), sha, self.dataset]).fetchone()
        if row:
            return self._subject_by_id(con, Item(coactive_image_id=row[0]))
        return None

    def _ingest(self, con, to_ingest, subjects, results, items, dataset) -> None:
        paths = sorted({str(p) for p, _ in to_ingest.values()})
        report = self.wh.ingest(paths, dataset=dataset, encoder=SIM_ENCODER, progress=False)
        for i, (path, sha) in to_ingest.items():
            found = self._subject_by_path(con, path, sha)
            if found is not None:
                subjects[i] = found
                continue
            row = con.execute("SELECT reason FROM catalog.ingest_errors WHERE run_id = ? AND path = ? LIMIT 1",
                              [report.run_id, str(path)]).fetchone()
            results[i] = self._error(i, items[i], ValueError(row[0] if row else "the file could not be ingested"))

    # -- scoring --------------------------------------------------------------------------
    def _vectors(self, con, encoder: str, column: str, dim: int, ids: list[str]) -> dict[str, np.ndarray]:
        from .labeled import vectors_for

        have = [r[0] for r in con.execute(
            "SELECT coactive_image_id FROM catalog.embeddings WHERE encoder = ? AND list_contains(?, coactive_image_id)",
            [encoder, ids]).fetchall()]
        if not have:
            return {}
        X = vectors_for(con, self.wh.root, encoder, column, dim, have)
        return dict(zip(have, X))

    def scores(self, con, asset_ids: list[str]) -> dict[str, dict[str, float | None]]:
        """Per asset, every category's probability (None where nothing scores it)."""
        from warehouse.concept_cache import load_heads, probabilities

        latest = dict(con.execute(
            "SELECT name, latest_version FROM catalog.concepts WHERE list_contains(?, name)",
            [list(taxonomy.CATEGORIES)]).fetchall())
        heads = [h for h in load_heads(con) if latest.get(h.concept) == h.version]
        own: dict[str, dict[str, float | None]] = {a: {} for a in asset_ids}
        by_col: dict[tuple, list] = {}
        for h in heads:
            by_col.setdefault((h.encoder, h.column, h.dim), []).append(h)
        for (enc, col, dim), hs in by_col.items():
            vecs = self._vectors(con, enc, col, dim, asset_ids)
            if not vecs:
                continue
            ids = list(vecs)
            P = probabilities(np.stack([vecs[i] for i in ids]), hs)
            for r, aid in enumerate(ids):
                for k, h in enumerate(hs):
                    own[aid][h.concept] = None if np.isnan(P[r, k]) else float(P[r, k])
        # Built-in definitions of categories that are not concepts (yet): same formula, in numpy.
        missing = [c for c, cat in taxonomy.CATEGORIES.items() if cat.has_builtin and c not in latest]
        if missing:
            vecs = self._vectors(con, taxonomy.BUILTIN_ENCODER, "probs", 1000, asset_ids)
            for aid, v in vecs.items():
                for c in missing:
                    own[aid][c] = float(min(max(v[list(taxonomy.CATEGORIES[c].imagenet_classes)].sum(), 0.0), 1.0))
        return {a: taxonomy.combine(s) for a, s in own.items()}

    def _similar(self, con, asset_ids: list[str]) -> dict[str, dict]:
        """Per asset, the most similar feedback-listed asset: {coactive_image_id, similarity, verdict}."""
        listed = con.execute("SELECT coactive_image_id, verdict FROM catalog.moderation_feedback "
                             "WHERE encoder = ?", [SIM_ENCODER]).fetchall()
        if not listed:
            return {}
        lv = self._vectors(con, SIM_ENCODER, SIM_COLUMN, SIM_DIM, [r[0] for r in listed])
        verdict = dict(listed)
        lids = list(lv)
        if not lids:
            return {}
        L = np.stack([lv[i] for i in lids]).astype(np.float64)
        L /= np.maximum(np.linalg.norm(L, axis=1, keepdims=True), 1e-12)
        qv = self._vectors(con, SIM_ENCODER, SIM_COLUMN, SIM_DIM, asset_ids)
        out = {}
        for aid, v in qv.items():
            q = v.astype(np.float64)
            q /= max(np.linalg.norm(q), 1e-12)
            sims = L @ q
            # ties between a block and a pass entry go to block: the safer call
            order = sorted(range(len(lids)), key=lambda k: (-round(sims[k], 6), verdict[lids[k]] != "block"))
            k = order[0]
            out[aid] = {"coactive_image_id": lids[k], "similarity": _round(sims[k]), "verdict": verdict[lids[k]]}
        return out

    def _decide(self, con, subjects: dict[int, Subject], pol: Policy) -> dict[int, dict]:
        ids = sorted({f for s in subjects.values() for f, _ in s.frames})
        scores = self.scores(con, ids)
        similar = self._similar(con, ids)
        out = {}
        for i, s in subjects.items():
            frames, worst, sims = [], "approved", []
            per_cat: dict[str, dict] = {}
            checked = pol.thresholds()
            scored = False
            for aid, t in s.frames:
                sc = scores.get(aid, {})
                scored = scored or any(sc.get(c) is not None for c in checked)
                status, trig = evaluate(sc, pol)
                sim = similar.get(aid)
                if sim and sim["similarity"] >= pol.similarity:
                    # a listed look-alike decides this frame, whatever the model says
                    status = VERDICTS[sim["verdict"]]
                    sims.append(dict(sim, time=t / 1000.0))
                worst = max(worst, status, key=SEVERITY.get)
                for tr in trig:
                    prev = per_cat.get(tr["category"])
                    if prev is None or tr["score"] > prev["score"]:
                        per_cat[tr["category"]] = dict(tr, time=t / 1000.0) if s.kind == "video" else tr
                frames.append({"time": t / 1000.0, "classes": [
                    {"class": c, "score": _round(v)} for c, v in sc.items() if v is not None]})
            categories = sorted(per_cat.values(), key=lambda t: (t["action"] != "reject", -t["score"]))
            status = worst
            deciding = [x for x in sims if VERDICTS[x["verdict"]] == status] or sims
            best_sim = max(deciding, key=lambda x: x["similarity"], default=None)
            if best_sim is not None and s.kind == "asset":
                best_sim.pop("time", None)
            reasons = self._reasons(status, categories, best_sim)
            if not scored and not sims:
                # Nothing could look at it (e.g. a dataset embedded only with CLIP and no category
                # concepts on CLIP): a person must, it is not "approved".
                status = "review"
                reasons = [{"unscored": f"no head of the policy's categories could score this "
                                        f"{s.media_type}; give its dataset {taxonomy.BUILTIN_ENCODER} vectors "
                                        "or label the categories on its encoder"}]
            out[i] = {
                "coactive_image_id": s.subject_id if s.kind == "asset" else None,
                "coactive_video_id": s.coactive_video_id,
                "media_type": s.media_type,
                "path": s.path,
                "sha256": s.sha256,
                "subject_kind": s.kind,
                "subject_id": s.subject_id,
                "model_status": status,
                "categories": categories,
                "similar": best_sim,
                "reasons": reasons,
                "output": frames,
            }
        return out

    @staticmethod
    def _reasons(status: str, categories: list[dict], sim: dict | None) -> list[dict]:
        reasons = []
        if sim and VERDICTS[sim["verdict"]] == status:
            reasons.append({"similar_to": sim["coactive_image_id"], "similarity": sim["similarity"],
                            "verdict": sim["verdict"]})
        wanted = {"rejected": "reject", "review": "review"}.get(status)
        reasons += [c for c in categories if c["action"] == wanted]
        return reasons

    # -- decisions ------------------------------------------------------------------------
    def _insert(self, subject_id, kind, status, reasons, pol: Policy | None, decided_by, user=None,
                comment=None, task_id=None) -> None:
        # moderation_status reads these rows: the change counter moves with them.
        with self.wh.transaction() as tx:
            con = tx.con
            tx.data_changed()
            # A person's decision records the model verdict it replaces (for the overturn rate).
            model = None
            if decided_by == "user":
                row = con.execute(
                    "SELECT status FROM catalog.moderation_decisions WHERE subject_id = ? AND decided_by = 'model' "
                    "AND status <> ? ORDER BY created_dt DESC, seq DESC LIMIT 1", [subject_id, PENDING]).fetchone()
                model = row[0] if row else None
            con.execute(
                "INSERT INTO catalog.moderation_decisions (seq, subject_id, subject_kind, status, reasons, policy, "
                "policy_version, policy_spec, decided_by, user_name, comment, task_id, created_dt, model_status) "
                "VALUES (nextval('catalog.moderation_decision_seq'), ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [subject_id, kind, status, json.dumps(reasons, default=str), pol.name if pol else None,
                 pol.version if pol else None, pol.spec() if pol else None, decided_by, user, comment, task_id,
                 catalog.now(), model])

    def _store(self, res: dict, pol: Policy, task_id: str | None) -> None:
        self._insert(res["subject_id"], res["subject_kind"], res["model_status"], res["reasons"], pol, "model",
                     task_id=task_id)

    def _override_of(self, con, subject_id: str) -> dict | None:
        row = con.execute(
            "SELECT status, user_name, comment, created_dt FROM catalog.moderation_decisions "
            "WHERE subject_id = ? AND decided_by = 'user' ORDER BY created_dt DESC, seq DESC LIMIT 1",
            [subject_id]).fetchone()
        if row is None:
            return None
        return {"status": row[0], "user": row[1], "comment": row[2], "decided_dt": row[3]}

    def _finish(self, con, res: dict, index: int, it: Item, cached: bool) -> dict:
        out = dict(res)
        out.update(index=index, id=it.id, input=it.describe(), cached=cached, error=None)
        ov = self._override_of(con, res["subject_id"])
        out["override"] = ov
        out["status"] = ov["status"] if ov else res["model_status"]
        out["decided_by"] = "user" if ov else "model"
        return out

    @staticmethod
    def _error(index: int, it: Item, e: Exception) -> dict:
        return {"index": index, "id": it.id, "input": it.describe(), "status": "error",
                "error": str(e), "cached": False}

    def override(self, subject_id: str, status: str, comment: str | None = None, user: str | None = None) -> dict:
        """A moderator's decision on an asset or video; it outranks every model decision, now and later."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        con = self.wh.cursor()
        kind = self._kind_of(con, subject_id)
        self._insert(subject_id, kind, status, [{"comment": comment}] if comment else [], None, "user",
                     user=user, comment=comment)
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
                kind = self._kind_of(con, sid)
            except ModerationNotFound:
                continue  # the task reports it as an error item
            self._insert(sid, kind, PENDING, [], None, "model", task_id=task_id)
            n += 1
        return n

    def _kind_of(self, con, subject_id: str) -> str:
        if con.execute("SELECT 1 FROM catalog.assets WHERE coactive_image_id = ?", [subject_id]).fetchone():
            return "asset"
        if con.execute("SELECT 1 FROM catalog.videos WHERE coactive_video_id = ?", [subject_id]).fetchone():
            return "video"
        raise ModerationNotFound(f"unknown asset or video {subject_id!r}")

    def decision(self, subject_id: str) -> dict:
        """The current status of an asset or video (override first) with its history, newest first."""
        con = self.wh.cursor()
        kind = self._kind_of(con, subject_id)
        rows = con.execute(
            "SELECT seq, status, reasons, policy, policy_version, decided_by, user_name, comment, task_id, created_dt, "
            "model_status FROM catalog.moderation_decisions WHERE subject_id = ? ORDER BY created_dt DESC, seq DESC",
            [subject_id]).fetchall()
        keys = ["seq", "status", "reasons", "policy", "policy_version", "decided_by", "user", "comment", "task_id",
                "decided_dt", "model_status"]
        history = [dict(zip(keys, r)) for r in rows]
        for h in history:
            h["reasons"] = json.loads(h["reasons"]) if h["reasons"] else []
        current = next((h for h in history if h["decided_by"] == "user"), history[0] if history else None)
        return {"subject_id": subject_id, "subject_kind": kind,
                "status": current["status"] if current else None,
                "decided_by": current["decided_by"] if current else None,
                "history": history}

    def queue(self, status: str | None = None, offset: int = 0, limit: int = 50, dataset: str | None = None) -> dict:
        """Assets and videos by their current status, newest decision first (the moderation queue)."""
        if status is not None and status not in (*STATUSES, PENDING):
            raise ValueError(f"status must be one of {', '.join((*STATUSES, PENDING))}, got {status!r}")
        con = self.wh.cursor()
        where = "WHERE (? IS NULL OR l.status = ?) AND (? IS NULL OR coalesce(a.dataset, v.dataset) = ?)"
        args = [status, status, dataset, dataset]
        base = ("FROM pixql_internal.moderation_latest l "
                "LEFT JOIN catalog.assets a ON a.coactive_image_id = l.subject_id "
                "LEFT JOIN catalog.videos v ON v.coactive_video_id = l.subject_id ")
        total = con.execute(f"SELECT count(*) {base} {where}", args).fetchone()[0]
        rows = con.execute(
            f"SELECT l.subject_id, l.subject_kind, l.status, l.reasons, l.policy, l.policy_version, l.decided_by, "
            f"l.user_name, l.comment, l.created_dt, coalesce(a.path, v.path), coalesce(a.dataset, v.dataset), "
            f"(SELECT min_by(k.coactive_image_id, k.keyframe_index) FROM pixql_internal.assets k "
            f" WHERE l.subject_kind = 'video' AND k.coactive_video_id = l.subject_id) "
            f"{base} {where} ORDER BY l.created_dt DESC, l.seq DESC LIMIT ? OFFSET ?",
            args + [limit, offset]).fetchall()
        items = []
        for r in rows:
            thumb_id = r[0] if r[1] == "asset" else r[12]
            items.append({
                "subject_id": r[0], "subject_kind": r[1], "status": r[2],
                "reasons": json.loads(r[3]) if r[3] else [], "policy": r[4], "policy_version": r[5],
                "decided_by": r[6], "user": r[7], "comment": r[8], "decided_dt": r[9], "path": r[10],
                "dataset": r[11], "thumbnail_url": f"/api/v1/assets/{thumb_id}/thumbnail" if thumb_id else None,
            })
        nxt = offset + len(items)
        return {"status": status, "total": total, "offset": offset, "limit": limit,
                "next_offset": nxt if nxt < total else None, "items": items}

    # -- feedback -------------------------------------------------------------------------
    def feedback(self, it: Item, verdict: str, categories: list[str] | None = None, user: str | None = None,
                 comment: str | None = None) -> dict:
        """Put an image on the block or pass list; categories also become concept labels."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be 'block' or 'pass', got {verdict!r}")
        categories = [taxonomy.check_category(c) for c in (categories or [])]
        con = self.wh.cursor()
        if it.coactive_video_id:
            raise ValueError("feedback takes an image or a keyframe id, not a whole video")
        if it.coactive_image_id:
            subject = self._subject_by_id(con, it)
        else:
            path, sha = self._intake(it)
            subject = self._subject_by_path(con, path, sha)
            if subject is None:
                subjects, results = {}, [None]
                self._ingest(con, {0: (path, sha)}, subjects, results, [it], self.dataset)
                if 0 not in subjects:
                    raise ValueError(results[0]["error"])
                subject = subjects[0]
            if subject.kind == "video":
                raise ValueError("feedback takes an image or a keyframe, not a whole video")
        aid = subject.subject_id
        if not self._vectors(con, SIM_ENCODER, SIM_COLUMN, SIM_DIM, [aid]):
            raise ValueError(f"asset {aid} has no {SIM_ENCODER} vectors to compare with; "
                             f"run `pixql embed --encoder {SIM_ENCODER}` on its dataset")
        with self.wh.write_lock:
            c = self.wh.cursor()
            c.execute("DELETE FROM catalog.moderation_feedback WHERE coactive_image_id = ?", [aid])
            c.execute("INSERT INTO catalog.moderation_feedback VALUES (?, ?, ?, ?, ?, ?, ?)",
                      [aid, verdict, json.dumps(categories), SIM_ENCODER, comment, user, catalog.now()])
        self._insert(aid, "asset", VERDICTS[verdict],
                     [{"feedback": verdict, "categories": categories, "comment": comment}], None, "user",
                     user=user, comment=comment or f"feedback: {verdict}")
        labels = [self._label(cat, aid, verdict, user) for cat in categories]
        return {"coactive_image_id": aid, "verdict": verdict, "list": "blocklist" if verdict == "block" else "passlist",
                "categories": categories, "labels": labels, "status": VERDICTS[verdict]}

    def _label(self, category: str, aid: str, verdict: str, user: str | None) -> dict:
        """block = a positive example of the category, pass = a negative one; trains a new version when
        the registry has enough labels, else keeps the label for later."""
        from . import registry
        from .heads import NotEnoughLabels

        pos, neg = ([aid], None) if verdict == "block" else (None, [aid])
        if registry.exists(self.wh, category):
            try:
                c = registry.add_labels(self.wh, category, positive=pos, negative=neg, created_by=user)
                return {"category": category, "concept_version": c.latest_version, "trained": True}
            except NotEnoughLabels as e:
                c = registry.add_labels(self.wh, category, positive=pos, negative=neg, created_by=user,
                                        retrain=False)
                return {"category": category, "concept_version": c.latest_version, "trained": False,
                        "detail": str(e)}
        # An empty category becomes a concept once its feedback holds enough labels.
        rows = self.wh.cursor().execute(
            "SELECT coactive_image_id, verdict FROM catalog.moderation_feedback "
            "WHERE list_contains(CAST(categories AS VARCHAR[]), ?)", [category]).fetchall()
        positives = [r[0] for r in rows if r[1] == "block"]
        negatives = [r[0] for r in rows if r[1] == "pass"]
        par = taxonomy.parent(category)
        try:
            c = registry.create(self.wh, category, positive=positives, negative=negatives, created_by=user,
                                description=taxonomy.CATEGORIES[category].title,
                                parent=par if par and registry.exists(self.wh, par) else None,
                                encoder=SIM_ENCODER)
            return {"category": category, "concept_version": c.latest_version, "trained": True}
        except NotEnoughLabels as e:
            return {"category": category, "concept_version": None, "trained": False,
                    "detail": f"kept on the feedback list ({len(positives)} block, {len(negatives)} pass so far): {e}"}

    def remove_feedback(self, asset_id: str) -> bool:
        with self.wh.write_lock:
            row = self.wh.cursor().execute(
                "DELETE FROM catalog.moderation_feedback WHERE coactive_image_id = ? RETURNING 1", [asset_id]
            ).fetchone()
        return row is not None

    def feedback_list(self, verdict: str | None = None) -> list[dict]:
        rows = self.wh.cursor().execute(
            "SELECT coactive_image_id, verdict, categories, comment, created_by, created_dt "
            "FROM catalog.moderation_feedback WHERE (? IS NULL OR verdict = ?) ORDER BY created_dt DESC",
            [verdict, verdict]).fetchall()
        keys = ["coactive_image_id", "verdict", "categories", "comment", "created_by", "created_dt"]
        return [dict(zip(keys, r), categories=json.loads(r[2] or "[]")) for r in rows]

    # -- cache ----------------------------------------------------------------------------
    def _state_token(self, con) -> str:
        concepts = con.execute(
            "SELECT name, latest_version FROM catalog.concepts WHERE list_contains(?, name) ORDER BY name",
            [list(taxonomy.CATEGORIES)]).fetchall()
        fb = con.execute("SELECT count(*), max(created_dt) FROM catalog.moderation_feedback").fetchone()
        return hashlib.sha256(json.dumps([concepts, fb], default=str).encode()).hexdigest()[:16]

    @staticmethod
    def _cache_key(sha: str, pol: Policy, state: str) -> str:
        return hashlib.sha256(f"{sha}|{pol.fingerprint()}|{state}".encode()).hexdigest()

    def _cache_get(self, con, sha: str, pol: Policy, state: str) -> dict | None:
        row = con.execute("SELECT result FROM catalog.moderation_cache WHERE cache_key = ? AND expires_dt > ?",
                          [self._cache_key(sha, pol, state), catalog.now()]).fetchone()
        with self._lock:
            if row is None:
                self.misses += 1
                return None
            self.hits += 1
        return json.loads(row[0])

    def _cache_put(self, con, res: dict, pol: Policy, state: str) -> None:
        if self.cache_ttl_s <= 0 or not res.get("sha256"):
            return
        now = catalog.now()
        with self.wh.write_lock:
            self.wh.cursor().execute(
                "INSERT OR REPLACE INTO catalog.moderation_cache VALUES (?, ?, ?, ?, ?, ?)",
                [self._cache_key(res["sha256"], pol, state), res["sha256"], pol.spec(),
                 json.dumps(res, default=str), now, now + timedelta(seconds=self.cache_ttl_s)])

    def cache_stats(self) -> dict:
        con = self.wh.cursor()
        total, live, oldest = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE expires_dt > ?), min(created_dt) FROM catalog.moderation_cache",
            [catalog.now()]).fetchone()
        with self._lock:
            hits, misses = self.hits, self.misses
        return {"entries": total, "live_entries": live, "expired_entries": total - live, "hits": hits,
                "misses": misses, "hit_rate": round(hits / (hits + misses), 4) if hits + misses else None,
                "ttl_seconds": self.cache_ttl_s, "oldest_dt": oldest}

    def clear_cache(self, sha256: str | None = None, expired_only: bool = False) -> int:
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
