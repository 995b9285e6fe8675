"""Ray for the layers above: connecting to a cluster, and bulk concept scoring on it.

    scorer = ray_scoring.ray_scorer()           # after ray_scoring.connect(address)
    concept_cache.materialize(con, root, heads, scorer=scorer)

`concept_cache.score_assets` does the alignment and `concept_cache.materialize`
writes the same `scores/` files and `catalog.concept_scores` rows as local
scoring (same transaction, same writer); only the scorer differs: each group
of vector parts is read and multiplied by the heads' weights in a Ray task on
some node (which memory-maps the part's float16 matrix from the shared storage,
as locally), and the probabilities come back to the head, which writes the cache.
It equals local scoring: the same numpy code on the same stored vectors.
`ingest/ray_pipeline.py` connects through `connect` too.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

PARTS_PER_TASK = 4  # small parts are scored several to a task, to keep per-task overhead low


def connect(address: str | None = None) -> bool:
    """Connect this process to the cluster at `address` (default: $RAY_ADDRESS, else the cluster
    `ray start` runs on this machine).  Returns True if this call connected (the caller disconnects)."""
    import ray

    if ray.is_initialized():
        return False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ray.init(address=address or os.environ.get("RAY_ADDRESS") or "auto", logging_level=logging.WARNING,
             log_to_driver=False)
    return True


def _score_parts_task(root: str, encoder: str, parts: list[str], column: str, heads) -> list[tuple]:
    from . import concept_cache

    return concept_cache.score_parts(Path(root), encoder, parts, column, heads)


def ray_scorer(num_cpus: float = 1, parts_per_task: int = PARTS_PER_TASK):
    """A `concept_cache.score_assets` scorer that runs the products on the connected Ray cluster."""
    import ray

    task = ray.remote(num_cpus=num_cpus)(_score_parts_task)

    def scorer(root, encoder, parts, column, heads) -> list[tuple]:
        heads_ref = ray.put(heads)
        refs = [task.remote(str(root), encoder, parts[i:i + parts_per_task], column, heads_ref)
                for i in range(0, len(parts), parts_per_task)]
        return [pair for chunk in ray.get(refs) for pair in chunk]  # in part order: the alignment needs it

    return scorer
