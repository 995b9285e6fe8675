"""Concepts: visual concepts as SQL columns (registry, heads, versions, calibration, scoring, active learning).

Python API (every function takes an open `warehouse.Warehouse`; the HTTP API and
the CLI call these, and `Warehouse` has thin methods that delegate here):

    from concepts import registry, active, classify, library
    registry.create(wh, "handgun", prompts=["revolver"], threshold=0.6)      # text head, version 1
    registry.create(wh, "logo", positive=[id_or_path, ...], negative=[...])   # labeled head
    registry.add_labels(wh, "handgun", positive=[...], negative=[...])         # version N+1
    registry.add_labels(wh, "handgun", positive=[...], retrain=False)          # store only; registry.train later
    registry.update(wh, "handgun", prompts=[...], negative_prompts=[...])      # version N+1
    registry.set_threshold(wh, "handgun", 0.7)                                 # version N+1, same head
    registry.get / list_concepts / versions / version / labels / children / delete / materialize
    active.candidates(wh, "handgun", n=20)     # most uncertain unlabeled assets
    active.estimate(wh, "handgun")             # count above threshold, expected positives, 95% interval
    active.prediction_estimate(wh, "handgun")  # assets per probability range (Coactive's estimation)
    registry.resolve(wh, name_or_concept_id)   # the name behind a concept's UUID (or its name)
    search.text(wh, "a cat", dataset="photos")             # text -> assets, best first
    search.similar(wh, asset=id_or_path, dataset="photos")  # cosine over stored vectors
    classify.classify(wh, paths, concepts=None, add=False)   # per file: probabilities + tags
    library.install_defaults(wh)               # the starter moderation library

Errors: `ConceptError` (bad input), its subclasses `ConceptNotFound` and
`NotEnoughLabels`.  Objects returned (`Concept`, `Version`) have `to_dict()`.

Modules: heads (HeadSpec; which column a head reads, asked of the encoder),
text (text heads, built by the encoder's text side in `encoders/`), labeled
(logistic regression, text prior), registry (catalog CRUD and versioning),
catalogue (the built-in concepts and moderation categories, one definition
each), library and taxonomy (the two views of it), active, classify, search, demo.  The
SQL side (macros, columns, materialised scores) is `warehouse/concept_sql.py`
and `warehouse/concept_cache.py`, because the warehouse builds the views
(`warehouse/similarity_sql.py` for search).
"""
from .heads import ConceptError, ConceptNotFound, HeadSpec, NotEnoughLabels

__all__ = ["ConceptError", "ConceptNotFound", "NotEnoughLabels", "HeadSpec"]
