"""`catalog.videos` rows: written by the pipeline in the transaction that commits keyframes."""
from __future__ import annotations

from warehouse import catalog


def upsert(con, dataset: str, run_id: str, infos) -> None:
    now = catalog.now()
    for v in infos:
        con.execute("DELETE FROM catalog.videos WHERE coactive_video_id = ?", [v.coactive_video_id])
        con.execute(
            "INSERT INTO catalog.videos VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [v.coactive_video_id, dataset, v.path, v.sha256, v.size_bytes, v.container, v.codec,
             v.width, v.height, v.duration_ms, v.fps, v.sample_fps, v.max_frames, v.frames_sampled,
             v.status, v.error, run_id, now],
        )


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
