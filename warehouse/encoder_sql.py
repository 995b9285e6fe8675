"""Column provider: what an encoder itself says about an asset (ImageNet top class).

Class names are stored in `catalog.class_names` by ingest when an encoder with
class probabilities is registered; here they become a list literal so the
stock DuckDB CLI computes the same column without any Python.
"""
from __future__ import annotations

from .views import ViewParts, vectors_join


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    encoders = [r[0] for r in con.execute("SELECT DISTINCT encoder FROM catalog.class_names ORDER BY 1").fetchall()]
    if "imagenet-lite0" not in encoders:
        return parts
    names = [r[0] for r in con.execute(
        "SELECT name FROM catalog.class_names WHERE encoder = 'imagenet-lite0' ORDER BY class_index").fetchall()]
    literal = "[" + ", ".join("'" + n.replace("'", "''") + "'" for n in names) + "]"
    parts.pre.append(f"CREATE OR REPLACE MACRO pixql_imagenet_class(i) AS {literal}[i]")
    alias, join = vectors_join("imagenet-lite0")
    parts.adv_joins.append(join)
    probs = f"{alias}.probs::FLOAT[]"
    parts.adv_columns += [
        f"pixql_imagenet_class(list_position({probs}, list_max({probs}))) AS imagenet_top_class",
        f"list_max({probs}) AS imagenet_top_prob",
    ]
    return parts
