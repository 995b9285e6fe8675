"""`Warehouse`: the one entry point to a PixQL data directory from Python.

    wh = Warehouse.open("pixql-data")        # created if missing
    wh.ingest(["photos/"], dataset="photos")
    wh.sql("SELECT count(*) FROM coactive_table").pl()

`sql` returns DuckDB's own relation, so `.pl()`, `.df()`, `.arrow()` and
`.fetchall()` behave exactly as in DuckDB.  The SDK is the trusted local path:
it runs SQL unsandboxed, like the DuckDB shell; the HTTP API sandboxes.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb

from . import catalog, migrations
from .storage import Layout, default_root
from .errors import Forbidden, MissingFile
from .transaction import transaction


class Warehouse:
    def __init__(self, layout: Layout, con: duckdb.DuckDBPyConnection, read_only: bool):
        self.layout = layout
        self.con = con
        self.read_only = read_only
        # DuckDB connections are not safe to share between threads; catalog
        # writes from worker threads go through this lock and a cursor.
        self.write_lock = threading.RLock()

    # -- opening ---------------------------------------------------------------
    @classmethod
    def open(cls, path: str | os.PathLike | None = None, read_only: bool = False) -> "Warehouse":
        layout = Layout(path if path is not None else default_root())
        if read_only:
            if not layout.db_path.exists():
                raise MissingFile(f"no warehouse at {layout.root} (missing {layout.db_path.name})")
            con = duckdb.connect(str(layout.db_path), read_only=True)
            try:
                migrations.check(con)  # an older schema needs a writable open to upgrade
            except Exception:
                con.close()
                raise
            return cls(layout, con, True)
        layout.root.mkdir(parents=True, exist_ok=True)
        con = duckdb.connect(str(layout.db_path))
        wh = cls(layout, con, False)
        try:
            catalog.create(con)
        except Exception:
            con.close()  # a refused or failed migration leaves the file as it was, and unheld
            raise
        layout.remove_temporaries()
        catalog.sweep_orphans(con, layout.root)
        # Paths inside views are absolute; rebuilding on open keeps them right
        # after the directory has been moved.
        wh.refresh_views()
        return wh

    @property
    def root(self) -> Path:
        return self.layout.root

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Warehouse":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def cursor(self) -> duckdb.DuckDBPyConnection:
        return self.con.cursor()

    # -- querying --------------------------------------------------------------
    def sql(self, query: str, params: list | None = None) -> duckdb.DuckDBPyRelation:
        if params:
            return self.con.execute(query, params)
        return self.con.sql(query)

    def refresh_views(self) -> None:
        """Refresh concept score caches and rebuild every view (also run on open)."""
        if self.read_only:
            return
        with self.transaction(scores=True):
            pass

    def transaction(self, views: bool = False, scores: bool = False, con=None):
        """The write lock and one catalog transaction; see `warehouse.transaction`.

        `views`/`scores` rebuild the views (after refreshing concept score
        caches) at commit, as `tx.rebuild_views()` does from inside the block;
        `con` runs it on that cursor instead of a new one.
        """
        if self.read_only:
            raise Forbidden("warehouse opened read-only")
        return transaction(con if con is not None else self.cursor(), self.write_lock, self.layout.root,
                           views=views, scores=scores)

    def datasets(self) -> duckdb.DuckDBPyRelation:
        return catalog.dataset_summaries(self.con)

    def errors(self, dataset: str | None = None, run_id: str | None = None) -> duckdb.DuckDBPyRelation:
        sql = "SELECT run_id, dataset, path, reason, created_dt FROM catalog.ingest_errors WHERE true"
        args = []
        if dataset:
            sql += " AND dataset = ?"
            args.append(dataset)
        if run_id:
            sql += " AND run_id = ?"
            args.append(run_id)
        sql += " ORDER BY created_dt, path"
        return self.con.sql(sql, params=args or None)  # a relation either way, as callers print it

    def runs(self) -> duckdb.DuckDBPyRelation:
        return self.con.sql("SELECT * FROM catalog.ingest_runs ORDER BY started_dt")

    # -- writing ---------------------------------------------------------------
    def ingest(self, paths, dataset: str = "default", encoder: str | None = None, **options):
        """Ingest images from directories, globs or file lists; see `ingest.pipeline.run`.

        The warehouse package imports nothing else at module level; this facade
        reaches into `ingest` lazily so `from warehouse import Warehouse` stays
        the single entry point the notebook user needs.
        """
        from ingest.pipeline import run

        return run(self, paths, dataset=dataset, encoder=encoder, **options)

    def embed(self, dataset: str, encoder: str, **options):
        """Compute a second (or missing) vector set for a dataset's existing assets."""
        from ingest.pipeline import reembed

        return reembed(self, dataset=dataset, encoder=encoder, **options)

    def analyze(self, dataset: str, analyzers, **options):
        """Run analyzers (nsfw, ocr, faces, nudity) on a dataset's assets that lack them;
        see `ingest.analyzers.run.analyze`."""
        from ingest.analyzers.run import analyze

        return analyze(self, dataset, analyzers, **options)

    def set_ocr_flag(self, flag: str, pattern: str | None, description: str | None = None) -> None:
        """Add, replace or (pattern=None) switch off an `ocr_flags` pattern; views update at once."""
        from .analyzer_sql import set_ocr_pattern

        self._catalog_write(lambda con: set_ocr_pattern(con, flag, pattern, description))

    def reset_ocr_flag(self, flag: str) -> bool:
        """Forget the override of an `ocr_flags` pattern, bringing its default back."""
        from .analyzer_sql import reset_ocr_pattern

        return self._catalog_write(lambda con: reset_ocr_pattern(con, flag))

    def _catalog_write(self, change):
        with self.transaction(views=True) as tx:
            return change(tx.con)

    # -- concepts (facade over `concepts`, imported lazily like `ingest`) ---------------
    def create_concept(self, name: str, prompts=None, negative_prompts=None, positive=None, negative=None, **options):
        """A concept from prompts and/or labelled examples (ids or paths); see `concepts.registry.create`."""
        from concepts import registry

        return registry.create(self, name, prompts=prompts, negative_prompts=negative_prompts,
                               positive=positive, negative=negative, **options)

    def concept(self, name: str):
        from concepts import registry

        return registry.get(self, name)

    def concepts(self, parent: str | None = None):
        from concepts import registry

        return registry.list_concepts(self, parent=parent)

    def concept_versions(self, name: str):
        from concepts import registry

        return registry.versions(self, name)

    def update_concept(self, name: str, **changes):
        from concepts import registry

        return registry.update(self, name, **changes)

    def delete_concept(self, name: str) -> None:
        from concepts import registry

        registry.delete(self, name)

    def label(self, concept: str, positive=None, negative=None, **options):
        """Add positive/negative examples (ids or paths) and train the next version."""
        from concepts import registry

        return registry.add_labels(self, concept, positive=positive, negative=negative, **options)

    def candidates(self, concept: str, n: int = 20, **options) -> list[dict]:
        from concepts import active

        return active.candidates(self, concept, n, **options)

    def estimate(self, concept: str, **options) -> dict:
        from concepts import active

        return active.estimate(self, concept, **options)

    def classify(self, paths, concepts=None, **options) -> list[dict]:
        """Probabilities and tags per file for the concept library (files are not added unless add=True)."""
        from concepts import classify

        return classify.classify(self, paths, concepts=concepts, **options)

    def install_default_concepts(self, **options) -> list[str]:
        from concepts import library

        return library.install_defaults(self, **options)
