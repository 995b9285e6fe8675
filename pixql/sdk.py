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

from concepts import active, classify as classify_, library, registry, search as search_
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

    def compact(self, dataset: str | None = None, part_rows: int | None = None, **options):
        """Merge small parts (every dataset, or one) without changing any answer; see `warehouse.compaction`."""
        from warehouse.compaction import compact

        return compact(self, dataset, part_rows, **options)

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

    def concept_classes(self, name: str, version: int | None = None) -> list[dict]:
        """The concept's class memberships (ConSE / built-in class map), largest first."""
        from concepts import memberships

        return memberships.of(self, name, version)

    def edit_concept_classes(self, name: str, pin=(), drop=(), reset=()):
        """Pin (membership 1), drop (0) or reset classes of the concept's class map: a new version."""
        return registry.edit_classes(self, name, pin=pin, drop=drop, reset=reset)

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

    # -- erasure (warehouse/erasure.py) -------------------------------------------------
    def delete(self, image_id=None, video_id=None, path=None, sha256=None, dataset=None, where: str | None = None,
               *, within: str | None = None, reason: str | None = None, by: str | None = None, block: bool = False,
               dry_run: bool = False, purge: bool = False):
        """Erase what the selectors name from every place the warehouse holds it; return the report.

        `dry_run` only counts (the preview); `block` refuses the same bytes from then on;
        `purge` also rewrites the database file (`vacuum`), which needs no other open handle.
        """
        from warehouse.erasure import erase
        from warehouse.erasure_select import select

        if not dry_run:
            # A half-read result on this handle pins a snapshot that still reads the old
            # files, which the erasure removes: end it (and its transaction) first.
            self.con.execute("SELECT 1").fetchall()
        sel = select(self.cursor(), image_id=image_id, video_id=video_id, path=path, sha256=sha256,
                     dataset=dataset, where=where, within=within)
        report = erase(self, sel, reason=reason, who=by, block=block, dry_run=dry_run)
        if purge and not dry_run:
            report.removed["vacuum_bytes_after"] = self.vacuum()["bytes_after"]
        return report

    def vacuum(self) -> dict:
        """Rewrite `pixql.duckdb` so deleted values leave its bytes (reopens this handle)."""
        import duckdb

        from warehouse.erasure_vacuum import vacuum

        self.con.close()
        try:
            return vacuum(self.root)
        finally:
            self.con = duckdb.connect(str(self.layout.db_path), read_only=self.read_only)

    def tombstones(self, limit: int = 1000) -> list[dict]:
        from warehouse import tombstones

        return tombstones.listing(self.cursor(), limit)

    # -- search ----------------------------------------------------------------------------
    def search_text(self, query, dataset: str | None = None, limit: int = 10, **options):
        """Assets a sentence describes, best first (the text head a concept with that prompt gets);
        see `concepts.search.text`."""
        return search_.text(self, query, dataset=dataset, limit=limit, **options)

    def search_similar(self, asset=None, image=None, dataset: str | None = None, limit: int = 10, **options):
        """Assets most similar to an asset (id or path) or a PIL image, by cosine over the stored
        vectors, the asset itself first; see `concepts.search.similar`."""
        return search_.similar(self, asset=asset, image=image, dataset=dataset, limit=limit, **options)
