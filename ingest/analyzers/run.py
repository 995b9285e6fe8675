"""Running analyzers: on a batch (`apply`), and over a dataset's existing assets (`analyze`).

`analyze` is what `pixql analyze --dataset D --analyzers ocr` runs: it finds the
assets that lack each analyzer, decodes them again (images from their path,
keyframes by streaming their video with its recorded sampling), and commits
analyzer parts every `part_rows` results in one transaction each, so a kill
loses at most the uncommitted part and a re-run continues where it stopped.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field

from tqdm.auto import tqdm

from warehouse import catalog

from ..decode import DecodedAsset, decode_source
from ..objects import location
from ..sources import Source
from . import get_analyzer, parse_analyzers
from . import store
from .base import ANALYSIS_MAX_SIDE
from warehouse.errors import Forbidden, Invalid, NotFound


def _where(a: DecodedAsset) -> str:
    return f" (keyframe at {a.keyframe_time_ms} ms)" if a.media_type == "keyframe" else ""


def apply(analyzer, assets: list[DecodedAsset], on_error) -> tuple[list[str], list[dict]]:
    """Analyze assets' images; an image the model fails on is reported and left unanalyzed
    (a later `pixql analyze` retries it) instead of failing the batch."""
    try:
        return [a.coactive_image_id for a in assets], analyzer.analyze([a.image for a in assets])
    except Exception:
        if len(assets) == 1:
            a = assets[0]
            import sys

            e = sys.exc_info()[1]
            on_error(a.path, f"analyzer {analyzer.name} failed{_where(a)}: {type(e).__name__}: {e}")
            return [], []
    ids, results = [], []
    for a in assets:  # find the one that broke the batch
        i, r = apply(analyzer, [a], on_error)
        ids += i
        results += r
    return ids, results


@dataclass
class AnalyzeReport:
    run_id: str
    dataset: str
    analyzers: list[str]
    assets_analyzed: int = 0
    results_added: int = 0
    errors: int = 0
    seconds: float = 0.0
    error_samples: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"dataset {self.dataset!r}: {', '.join(self.analyzers) or 'no analyzers'} ran on "
            f"{self.assets_analyzed} assets ({self.results_added} results), {self.errors} errors "
            f"in {self.seconds:.1f}s"
        )


class _Committer:
    def __init__(self, wh, dataset, run_id):
        self.wh, self.dataset, self.run_id = wh, dataset, run_id
        self.buffer = store.AnalysisBuffer()
        self.errors: list[tuple[str, str]] = []
        self.con = wh.cursor()

    def error(self, path: str, reason: str) -> None:
        self.errors.append((path, reason))

    def flush(self) -> int:
        n = self.buffer.pending
        if not n and not self.errors:
            return 0
        layout = self.wh.layout
        written = self.buffer.write(layout, self.dataset)
        now = catalog.now()
        con = self.con
        with self.wh.transaction(con=con) as tx:
            store.commit(con, layout.root, self.dataset, self.run_id, written, now)
            catalog.record_ingest_errors(con, self.run_id, self.dataset, self.errors, now)
            if self.errors:
                tx.data_changed()  # the ingest_errors view reads catalog.ingest_errors
            if written:
                tx.rebuild_views()
        self.buffer.clear()
        self.errors = []
        return n


def missing(con, dataset: str, names: list[str]) -> dict[str, tuple[str, str, list[str]]]:
    """coactive_image_id -> (path, media_type, analyzers it lacks), in path order."""
    out: dict = {}
    for name in names:
        rows = con.execute(
            """SELECT a.coactive_image_id, a.path, a.media_type FROM catalog.assets a
               WHERE a.dataset = ? AND NOT EXISTS (SELECT 1 FROM catalog.analyses x
                     WHERE x.coactive_image_id = a.coactive_image_id AND x.analyzer = ?)
               ORDER BY a.path, a.coactive_image_id""",
            [dataset, name],
        ).fetchall()
        for aid, path, media in rows:
            out.setdefault(aid, (path, media, []))[2].append(name)
    return dict(sorted(out.items(), key=lambda kv: kv[1][0]))


def _decoded(path: str, media: str, ids: set[str], dataset: str, known_videos: dict, on_error):
    """Yield the stored assets `ids` of one file, decoded again."""
    src = Source(location(path))  # a local file or an object URI, as ingest stored it
    try:
        present = src.path.exists()
    except OSError as e:  # an object the credentials may no longer read
        on_error(path, f"cannot analyze: {e}")
        return
    if not present:
        on_error(path, "file no longer exists; cannot analyze")
        return
    if media == "keyframe":
        from .. import video as video_mod
        from ..decode import DecodeError

        try:
            res = video_mod.decode_video(src, dataset, only_ids=ids, known_videos=known_videos,
                                         analysis_size=ANALYSIS_MAX_SIDE)
        except DecodeError as e:
            on_error(path, f"cannot analyze: {e}")
            return
        found = set()
        for a in res.frames:
            found.add(a.coactive_image_id)
            yield a
        if found != ids:
            on_error(path, f"cannot analyze {len(ids - found)} keyframes: the video changed since ingest")
        return
    res = decode_source(src, dataset, target=ANALYSIS_MAX_SIDE)
    if res.error:
        on_error(path, f"cannot analyze: {res.error}")
        return
    for a in res.assets:
        if a.coactive_image_id in ids:
            if max(a.image.size) > ANALYSIS_MAX_SIDE:
                a.image.thumbnail((ANALYSIS_MAX_SIDE, ANALYSIS_MAX_SIDE))
            yield a
        else:
            on_error(path, "cannot analyze: the file changed since ingest")


def analyze(wh, dataset: str, analyzers, batch_size: int = 16, part_rows: int = 256,
            progress: bool = True, run_id: str | None = None, register: bool = True,
            only=None) -> AnalyzeReport:
    """Run `analyzers` on every asset of `dataset` that lacks them (of the ids in `only`, if given:
    moderation analyzes what it moderates); record them for the dataset."""
    from ..video_catalog import known_videos as videos_of

    if wh.read_only:
        raise Forbidden("warehouse opened read-only")
    names = parse_analyzers(analyzers)
    if not names:
        raise Invalid("no analyzers given: choose from nsfw, ocr, faces, nudity")
    con = wh.cursor()
    if not con.execute("SELECT 1 FROM catalog.datasets WHERE name = ?", [dataset]).fetchone():
        raise NotFound(f"unknown dataset {dataset!r}")
    objs = {n: get_analyzer(n) for n in names}
    started = time.perf_counter()
    report = AnalyzeReport(run_id or uuid.uuid4().hex[:12], dataset, names)
    if register:
        with wh.transaction(views=True, con=con):
            store.register(con, dataset, list(objs.values()))
    elif only is not None:  # the columns exist, but the dataset's later ingests do not run them
        with wh.transaction(views=True, con=con):
            store.describe(con, list(objs.values()))
    todo = missing(con, dataset, names)
    if only is not None:
        todo = {k: v for k, v in todo.items() if k in set(only)}
    by_path: dict[tuple[str, str], set[str]] = {}
    for aid, (path, media, _) in todo.items():
        by_path.setdefault((path, media), set()).add(aid)
    known = {p: dict(v, complete=False) for p, v in videos_of(con, dataset, "").items()}
    committer = _Committer(wh, dataset, report.run_id)

    def on_error(path, reason):
        report.errors += 1
        committer.error(path, reason)
        if len(report.error_samples) < 20:
            report.error_samples.append({"path": path, "reason": reason})

    batch: list[DecodedAsset] = []

    def run_batch():
        nonlocal batch
        for name, an in objs.items():
            sub = [a for a in batch if name in todo[a.coactive_image_id][2]]
            if sub:
                ids, results = apply(an, sub, on_error)
                committer.buffer.add(an, ids, results)
                report.results_added += len(ids)
        report.assets_analyzed += len(batch)
        batch = []

    bar = tqdm(total=len(todo), unit="asset", disable=not progress, desc=f"analyze {dataset}", dynamic_ncols=True)
    try:
        for (path, media), ids in by_path.items():
            for a in _decoded(path, media, ids, dataset, known, on_error):
                batch.append(a)
                if len(batch) >= batch_size:
                    bar.update(len(batch))
                    run_batch()
                if committer.buffer.pending >= part_rows:
                    committer.flush()
        bar.update(len(batch))
        run_batch()
        committer.flush()
    finally:
        bar.close()
    report.seconds = time.perf_counter() - started
    return report
