"""Moderation: items in, `approved` | `rejected` | `review` out, every decision kept in the catalog.

    from concepts.moderation import Item, Moderator
    Moderator(wh).moderate([Item(path="upload.jpg")], policy="strict")

One module per idea (each docstring says what it owns):

| module        | owns                                                                    |
| ------------- | ----------------------------------------------------------------------- |
| `moderator`   | `Moderator`: the order of one run, and the front door to the rest       |
| `subjects`    | `Item` -> `Subject`: hashing, stored uploads, lookup, ingest of new files |
| `scoring`     | category probabilities from the heads the concept columns use           |
| `similarity`  | the block/pass lists (`catalog.moderation_feedback`) and look-alikes    |
| `verdicts`    | scores + look-alikes + policy -> the model's verdict and reasons (pure) |
| `decisions`   | `catalog.moderation_decisions`: writes, overrides, history              |
| `feedback`    | list entry + decision + concept labels in one transaction, then training |
| `cache`       | `catalog.moderation_cache`: results by content hash, policy and model state |
| `queue`       | the one queue query (the API, `pixql queue` and the review page)        |

Downloads are not here: the caller passes `fetch=` and `files=` (the server's
intake boundary, `api.intake`).
"""
from .cache import DEFAULT_TTL_S
from .decisions import PENDING, STATUSES
from .moderator import MAX_SYNC_ITEMS, Moderator
from .similarity import SIM_COLUMN, SIM_DIM, SIM_ENCODER, VERDICTS
from .subjects import DEFAULT_DATASET, Item, ModerationNotFound, Subject
from .verdicts import SEVERITY, evaluate

__all__ = ["Moderator", "Item", "Subject", "ModerationNotFound", "evaluate", "MAX_SYNC_ITEMS", "STATUSES",
           "PENDING", "SEVERITY", "VERDICTS", "DEFAULT_DATASET", "DEFAULT_TTL_S", "SIM_ENCODER", "SIM_COLUMN",
           "SIM_DIM"]
