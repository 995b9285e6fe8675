"""Column provider: concept versions stored in the catalog become SQL columns.

For every concept `c` (rows of `catalog.concepts`, heads in `catalog.concept_versions`):

    coactive_table      c (0/1 at the threshold of the newest version), c_latest_prob, c_prob
    coactive_table_adv  the same, plus c_v<N>_prob for every version N

Each version compiles to a DuckDB macro stored in the database file,

    pixql_concept_<c>_v<N>(x) = link(scale * array_inner_product(x::FLOAT[D], [w...]::FLOAT[D]) + bias)

so the stock DuckDB CLI computes the same numbers without any Python, and DuckDB
evaluates only the concept columns a query names.  When a version has a
complete materialised cache (`concept_cache.py`), the view reads it instead:
the wide segments (every asset column and a column per concept version) become
the views' base scan in place of the asset parts, so a query reads only the
columns it names and DuckDB pushes its filters and limits into that one scan;
columns added since those segments were written come from the delta segments,
positionally joined on until the background merge folds them in.
Scoring new asset parts and writing those segments is `concept_cache.refresh`,
a step writers ask for (`transaction`, `scores=True`); this module only reads
the catalog.  It never imports code from outside `warehouse`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .concept_cache import Head, load_heads, usable_segments
from .views import INTERNAL, ViewParts, parquet_source, vectors_join

MACRO_PREFIX = "pixql_concept_"


def macro_name(concept: str, version: int) -> str:
    return f"{MACRO_PREFIX}{concept}_v{version}"


def _float(x: float) -> str:
    # 9 significant digits round-trip a float32 exactly.
    return format(float(np.float32(x)), ".9g") if np.isfinite(x) else "0"


def head_expression(h: Head, x: str) -> str:
    """The SQL of one head over the vector expression `x` (also what the macro holds)."""
    w = "[" + ", ".join(_float(v) for v in h.weights) + "]"
    dot = f"array_inner_product(CAST({x} AS FLOAT[{h.dim}]), CAST({w} AS FLOAT[{h.dim}]))"
    z = f"({format(h.scale, '.17g')} * {dot} + {format(h.bias, '.17g')})"
    if h.link == "logistic":
        return f"1.0 / (1.0 + exp(-least(greatest({z}, -50.0), 50.0)))"
    return f"least(greatest({z}, 0.0), 1.0)"


def macro_statement(h: Head) -> str:
    return f"CREATE OR REPLACE MACRO {macro_name(h.concept, h.version)}(x) AS {head_expression(h, 'x')}"


def contribute(con, root) -> ViewParts:
    parts = ViewParts()
    root = Path(root)
    concepts = con.execute(
        "SELECT name, latest_version, threshold FROM catalog.concepts ORDER BY name"
    ).fetchall()
    heads = load_heads(con)
    current = {macro_name(h.concept, h.version) for h in heads}
    for (name,) in con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE function_type = 'macro' "
        "AND schema_name = 'main' AND starts_with(function_name, ?)", [MACRO_PREFIX]
    ).fetchall():
        if name not in current:
            parts.pre.append(f"DROP MACRO IF EXISTS {name}")
    if not concepts:
        return parts

    # Which versions the combined segments serve was settled by the last
    # `concept_cache.refresh`; the rest read their macro.
    segs = usable_segments(con, heads)
    served = segs.members
    expr: dict[tuple[str, int], str] = {}
    for h in heads:
        parts.pre.append(macro_statement(h))
    if served:
        base = parquet_source("scores", root, segs.base, parts.pre, union_by_name=False) if segs.base \
            else f"{INTERNAL}.assets"
        if segs.delta:
            # Columns added since the base segments were written, row-aligned with them, until
            # the background merge folds them in: a positional join (no late materialisation
            # through it, so warm queries are slower until then).
            delta = parquet_source("scores_delta", root, segs.delta, parts.pre, union_by_name=False)
            base = f"(SELECT * FROM {base} POSITIONAL JOIN {delta})"
        parts.base = base
    latest_of = {name: latest for name, latest, _ in concepts}
    for h in heads:
        if (h.concept, h.version) in served:
            expr[(h.concept, h.version)] = f"a.{h.concept}_v{h.version}"
        else:
            alias, join = vectors_join(h.encoder)
            # Only a latest version's macro is in coactive_table; older versions'
            # vector joins would cost it a hash join for columns it never shows.
            target = parts.joins if latest_of.get(h.concept) == h.version else parts.adv_joins
            if join not in target:
                target.append(join)
            expr[(h.concept, h.version)] = f"{macro_name(h.concept, h.version)}({alias}.{h.column})"

    by_concept: dict[str, list[Head]] = {}
    for h in heads:
        by_concept.setdefault(h.concept, []).append(h)
    for name, latest, threshold in concepts:
        if (name, latest) not in expr:
            continue
        e = expr[(name, latest)]
        parts.columns += [
            f"CASE WHEN {e} IS NULL THEN NULL WHEN {e} >= {format(threshold, '.17g')} THEN 1 ELSE 0 END AS {name}",
            f"CAST({e} AS DOUBLE) AS {name}_latest_prob",
            f"CAST({e} AS DOUBLE) AS {name}_prob",
        ]
        parts.adv_columns += [
            f"CAST({expr[(name, h.version)]} AS DOUBLE) AS {name}_v{h.version}_prob" for h in by_concept.get(name, [])
        ]
    return parts

