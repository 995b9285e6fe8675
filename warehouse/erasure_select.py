"""Which assets, videos and datasets an erasure selector names (read only, nothing changes).

Selectors: `image_id`, `video_id`, `path`, `sha256`, `dataset` (the whole
dataset, its row included) and `where` (a SQL predicate over
`coactive_table_adv`, the trusted local path like `Warehouse.sql`); `within`
restricts any of them to one dataset.  A keyframe is never erased alone: its
content is its video's, so selecting one keyframe selects the video and every
keyframe of it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .catalog import in_list
from .errors import Invalid, NotFound


@dataclass
class Selection:
    assets: dict[str, dict] = field(default_factory=dict)  # id -> {dataset, path, sha256, media_type, video}
    videos: dict[str, dict] = field(default_factory=dict)  # id -> {dataset, path, sha256}
    datasets: list[str] = field(default_factory=list)  # datasets erased whole (their rows go too)

    @property
    def empty(self) -> bool:
        return not (self.assets or self.videos or self.datasets)

    def counts(self) -> dict[str, int]:
        kinds = [a["media_type"] for a in self.assets.values()]
        return {"images": kinds.count("image"), "keyframes": kinds.count("keyframe"),
                "videos": len(self.videos), "datasets": len(self.datasets)}


def _as_list(v) -> list[str]:
    if v is None:
        return []
    return [v] if isinstance(v, str) else [str(x) for x in v]


_ASSET_COLS = "coactive_image_id, dataset, path, sha256, media_type, coactive_video_id"


def select(con, image_id=None, video_id=None, path=None, sha256=None, dataset=None, where: str | None = None,
           within: str | None = None) -> Selection:
    """Resolve selectors to what they name; a selector that names nothing is not an error (re-runs)."""
    images, vids, paths, shas, dsets = (_as_list(image_id), _as_list(video_id), _as_list(path), _as_list(sha256),
                                        _as_list(dataset))
    if not (images or vids or paths or shas or dsets or where):
        raise Invalid("name what to delete: an image id, a video id, a path, a sha256, a dataset or a --where predicate")
    for d in dsets:
        if not con.execute("SELECT count(*) FROM catalog.datasets WHERE name = ?", [d]).fetchone()[0]:
            raise NotFound(f"unknown dataset {d!r}")
    scope, scope_args = ("AND dataset = ?", [within]) if within else ("", [])
    sel = Selection(datasets=list(dsets))
    rows: list[tuple] = []
    q = f"SELECT {_ASSET_COLS} FROM pixql_internal.assets WHERE "
    if images:
        rows += con.execute(q + in_list("coactive_image_id") + f" {scope}", [images, *scope_args]).fetchall()
    if vids:
        rows += con.execute(q + in_list("coactive_video_id") + f" {scope}", [vids, *scope_args]).fetchall()
    if paths:
        rows += con.execute(q + in_list("path") + f" {scope}", [paths, *scope_args]).fetchall()
    if shas:
        rows += con.execute(q + in_list("sha256") + f" {scope}", [shas, *scope_args]).fetchall()
    if dsets:
        rows += con.execute(q + in_list("dataset"), [dsets]).fetchall()
    if where:
        if ";" in where:
            raise Invalid("--where is one predicate over coactive_table_adv (no ';')")
        try:
            ids = [r[0] for r in con.execute(
                f"SELECT coactive_image_id FROM main.coactive_table_adv WHERE ({where}) {scope}", scope_args).fetchall()]
        except Exception as e:  # DuckDB's own message names the column or syntax at fault
            raise Invalid(f"bad --where predicate: {e}") from None
        rows += con.execute(q + in_list("coactive_image_id"), [ids]).fetchall()
    # Videos named directly, by path or hash (a video with no keyframe committed yet too).
    vq = "SELECT coactive_video_id, dataset, path, sha256 FROM catalog.videos WHERE "
    vrows: list[tuple] = []
    if vids:
        vrows += con.execute(vq + in_list("coactive_video_id") + f" {scope}", [vids, *scope_args]).fetchall()
    if paths:
        vrows += con.execute(vq + in_list("path") + f" {scope}", [paths, *scope_args]).fetchall()
    if shas:
        vrows += con.execute(vq + in_list("sha256") + f" {scope}", [shas, *scope_args]).fetchall()
    if dsets:
        vrows += con.execute(vq + in_list("dataset"), [dsets]).fetchall()
    keyframe_videos = sorted({r[5] for r in rows if r[4] == "keyframe" and r[5]})
    if keyframe_videos:
        vrows += con.execute(vq + in_list("coactive_video_id"), [keyframe_videos]).fetchall()
    for vid, ds, p, sha in vrows:
        sel.videos[vid] = {"dataset": ds, "path": p, "sha256": sha}
    if sel.videos:  # every keyframe of every selected video
        rows += con.execute(q + in_list("coactive_video_id"), [list(sel.videos)]).fetchall()
    for aid, ds, p, sha, media, vid in rows:
        sel.assets[aid] = {"dataset": ds, "path": p, "sha256": sha, "media_type": media, "video": vid}
    return sel
