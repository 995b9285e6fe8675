"""`Warehouse`: the one entry point to a PixQL data directory from Python.

    wh = Warehouse.open("pixql-data")        # created if missing
    wh.ingest(["photos/"], dataset="photos")
    wh.sql("SELECT count(*) FROM coactive_table").pl()

The storage layer's `WarehouseCore` (warehouse/core.py) opens the directory and
runs SQL; this subclass adds what needs the layers above it: ingest, embedding,
analyzers (`ingest`) and concepts, labels, candidates, classification
(`concepts`).  It sits above all of them, so the layers below import one way.
"""
from __future__ import annotations

from concepts import active, classify as classify_, library, registry
from ingest.analyzers.run import analyze as analyze_
from warehouse.core import WarehouseCore


class Warehouse(WarehouseCore):
    # -- ingest ----------------------------------------------------------------------------
    # `ingest.pipeline` loads torch (seconds); it is imported on first use so that
    # `from warehouse import Warehouse` stays as quick as opening DuckDB.
    def ingest(self, paths, dataset: str = "default", encoder: str | None = None, engine: str = "local",
               ray_address: str | None = None, **options):
        """Ingest images from directories, globs or file lists; see `ingest.pipeline.run`.

        `engine="ray"` decodes, embeds and writes parts on a Ray cluster (`ray_address`, default
        $RAY_ADDRESS or the local `ray start` cluster) and commits here; see `ingest.ray_pipeline`."""
        if engine == "ray":
            from ingest.ray_pipeline import run as run_on_ray

            return run_on_ray(self, paths, dataset=dataset, encoder=encoder, ray_address=ray_address, **options)
        if engine != "local":
            from warehouse.errors import Invalid

            raise Invalid(f"unknown ingest engine {engine!r}: use 'local' or 'ray'")
        from ingest.pipeline import run

        return run(self, paths, dataset=dataset, encoder=encoder, **options)

    def embed(self, dataset: str, encoder: str, **options):
        """Compute a second (or missing) vector set for a dataset's existing assets."""
        from ingest.pipeline import reembed

        return reembed(self, dataset=dataset, encoder=encoder, **options)

    def analyze(self, dataset: str, analyzers, **options):
        """Run analyzers (nsfw, ocr, faces, nudity) on a dataset's assets that lack them;
        see `ingest.analyzers.run.analyze`."""
        return analyze_(self, dataset, analyzers, **options)

    # -- concepts --------------------------------------------------------------------------
    def create_concept(self, name: str, prompts=None, negative_prompts=None, positive=None, negative=None,
                       engine: str = "local", ray_address: str | None = None, **options):
        """A concept from prompts and/or labelled examples (ids or paths); see `concepts.registry.create`.
        With `engine="ray"` its vectors are scored on the Ray cluster (see `rescore_concepts`)."""
        if engine == "ray":
            options["materialize"] = False
        c = registry.create(self, name, prompts=prompts, negative_prompts=negative_prompts,
                            positive=positive, negative=negative, **options)
        return self._scored_on(engine, ray_address, name) or c

    def rescore_concepts(self, names=None, engine: str = "local", ray_address: str | None = None,
                         all_versions: bool = False) -> list[tuple[str, int]]:
        """Score every vector again for the named concepts' newest versions (default: all concepts) and
        rewrite their caches; `engine="ray"` runs the matrix products on a Ray cluster
        (`warehouse/ray_scoring.py`), writing the same caches."""
        if engine not in ("local", "ray"):
            from warehouse.errors import Invalid

            raise Invalid(f"unknown scoring engine {engine!r}: use 'local' or 'ray'")
        if engine == "local":
            return registry.materialize(self, names, all_versions=all_versions, force=True)
        from warehouse import ray_scoring

        owns = ray_scoring.connect(ray_address)
        try:
            return registry.materialize(self, names, all_versions=all_versions, force=True,
                                        scorer=ray_scoring.ray_scorer())
        finally:
            if owns:
                import ray

                ray.shutdown()

    def _scored_on(self, engine: str, ray_address: str | None, name: str):
        """After a version committed unscored (engine="ray"): score it on the cluster, return the concept."""
        if engine != "ray":
            return None
        self.rescore_concepts([name], engine="ray", ray_address=ray_address)
        return registry.get(self, name)

    def concept(self, name: str):
        return registry.get(self, name)

    def concepts(self, parent: str | None = None):
        return registry.list_concepts(self, parent=parent)

    def concept_versions(self, name: str):
        return registry.versions(self, name)

    def update_concept(self, name: str, **changes):
        return registry.update(self, name, **changes)

    def delete_concept(self, name: str) -> None:
        registry.delete(self, name)

    def label(self, concept: str, positive=None, negative=None, engine: str = "local",
              ray_address: str | None = None, **options):
        """Add positive/negative examples (ids or paths) and train the next version
        (scored on the Ray cluster with `engine="ray"`)."""
        if engine == "ray":
            options["materialize"] = False
        c = registry.add_labels(self, concept, positive=positive, negative=negative, **options)
        return self._scored_on(engine, ray_address, concept) or c

    def candidates(self, concept: str, n: int = 20, **options) -> list[dict]:
        return active.candidates(self, concept, n, **options)

    def estimate(self, concept: str, **options) -> dict:
        return active.estimate(self, concept, **options)

    def classify(self, paths, concepts=None, **options) -> list[dict]:
        """Probabilities and tags per file for the concept library (files are not added unless add=True)."""
        return classify_.classify(self, paths, concepts=concepts, **options)

    def install_default_concepts(self, **options) -> list[str]:
        return library.install_defaults(self, **options)
