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
    def ingest(self, paths, dataset: str = "default", encoder: str | None = None, **options):
        """Ingest images from directories, globs or file lists; see `ingest.pipeline.run`."""
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

    def compact(self, dataset: str | None = None, part_rows: int | None = None, **options):
        """Merge small parts (every dataset, or one) without changing any answer; see `warehouse.compaction`."""
        from warehouse.compaction import compact

        return compact(self, dataset, part_rows, **options)

    # -- concepts --------------------------------------------------------------------------
    def create_concept(self, name: str, prompts=None, negative_prompts=None, positive=None, negative=None, **options):
        """A concept from prompts and/or labelled examples (ids or paths); see `concepts.registry.create`."""
        return registry.create(self, name, prompts=prompts, negative_prompts=negative_prompts,
                               positive=positive, negative=negative, **options)

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

    def label(self, concept: str, positive=None, negative=None, **options):
        """Add positive/negative examples (ids or paths) and train the next version."""
        return registry.add_labels(self, concept, positive=positive, negative=negative, **options)

    def candidates(self, concept: str, n: int = 20, **options) -> list[dict]:
        return active.candidates(self, concept, n, **options)

    def estimate(self, concept: str, **options) -> dict:
        return active.estimate(self, concept, **options)

    def classify(self, paths, concepts=None, **options) -> list[dict]:
        """Probabilities and tags per file for the concept library (files are not added unless add=True)."""
        return classify_.classify(self, paths, concepts=concepts, **options)

    def install_default_concepts(self, **options) -> list[str]:
        return library.install_defaults(self, **options)
