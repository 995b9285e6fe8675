"""`catalog.videos` rows: written by the pipeline in the transaction that commits keyframes."""
from __future__ import annotations

from warehouse import catalog


def upsert(con, dataset: str, run_id: str, infos) -> None:
    now = catalog.now()
    for v in infos:
        con.execute("DELETE FROM catalog.videos WHERE coactive_video_id = ?", [v.coactive_video_id])
        catalog.insert(con, "videos", dict(
            coactive_video_id=v.coactive_video_id, dataset=dataset, path=v.path, sha256=v.sha256,
            size_bytes=v.size_bytes, container=v.container, codec=v.codec, width=v.width, height=v.height,
            duration_ms=v.duration_ms, fps=v.fps, sample_fps=v.sample_fps, max_frames=v.max_frames,
            frames_sampled=v.frames_sampled, status=v.status, error=v.error, run_id=run_id, created_dt=now))


def known_videos(con, dataset: str, encoder: str) -> dict[str, dict]:
    """path -> first sampling and whether every keyframe already has `encoder` vectors."""
    rows = con.execute(
        """SELECT v.path, v.sha256, v.sample_fps, v.max_frames, v.status, v.frames_sampled,
                  (SELECT count(*) FROM catalog.assets a JOIN catalog.embeddings e USING (coactive_image_id)
                    WHERE a.dataset = v.dataset AND a.path = v.path AND a.sha256 = v.sha256
                      AND a.media_type = 'keyframe' AND e.encoder = ?) AS embedded
           FROM catalog.videos v WHERE v.dataset = ?""",
        [encoder, dataset],
    ).fetchall()
    return {
        path: {
            "sha256": sha, "sample_fps": fps, "max_frames": mf,
            "complete": status != "partial" and embedded >= n,
        }
        for path, sha, fps, mf, status, n, embedded in rows
    }
