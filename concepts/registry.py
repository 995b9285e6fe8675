"""The concept registry: concepts, their versions and their labels, in the warehouse catalog.

Every function takes an open `Warehouse` (the HTTP API and the CLI call these,
`Warehouse` methods delegate here).  Errors are `ConceptError` (bad input, a
400), `ConceptNotFound` (a 404) and `NotEnoughLabels` (a 400 that says how many
more labels are needed).

    create(wh, "handgun", prompts=["revolver"], threshold=0.6)     -> Concept (version 1)
    add_labels(wh, "handgun", positive=[id_or_path, ...], negative=[...])   -> Concept (version N+1)
    update(wh, "handgun", prompts=[...], negative_prompts=[...])    -> new version
    set_threshold(wh, "handgun", 0.7)                                -> new version, same head
    recalibrate(wh, "handgun")                                       -> new version at the default threshold
    get / list_concepts / versions / version / labels / children / delete / materialize

Any change to prompts, labels or threshold makes version N+1 (old versions stay
queryable as `<name>_v<N>_prob` in `coactive_table_adv`); the description and
parent change in place.  A threshold left out (None) is set by the default rule
of `concepts/calibrate.py` (a new version's, from its own scores or labels); a
threshold the user gave is kept across retraining until `recalibrate`.  Concepts form a two-level taxonomy through `parent`.
The new version, its labels, its materialised scores and the rebuilt views
commit in one transaction.

Size: over 400 lines because every write path (create, labels, update,
threshold, recalibrate, delete) ends in the one version-making transaction
`_commit`; moving the read-only lookups to their own module is the next split.
"""
from __future__ import annotations

import json
import re
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime

import numpy as np

import encoders
from warehouse import catalog, concept_cache, views

from . import calibrate, memberships, quality
from .heads import ConceptError, ConceptNotFound, HeadSpec, NotEnoughLabels, class_names, labeled_column
from .labeled import MIN_NEGATIVE, MIN_POSITIVE, existing_encoder_dim, labeled_head
from .text import text_head

__all__ = [
    "Concept", "Version", "ConceptError", "ConceptNotFound", "NotEnoughLabels",
    "create", "create_from_head", "update", "edit_classes", "set_threshold", "recalibrate", "add_labels", "set_labels", "remove_labels", "train",
    "get", "exists", "list_concepts", "versions", "version", "labels", "children", "delete",
    "materialize", "resolve_assets", "validate_name", "default_encoder", "resolve", "autosample_negatives",
    "EMPTY_BIAS",
]

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
DEFAULT_THRESHOLD = None  # the default rule, concepts/calibrate.py
USER = "user"
LABEL_VALUES = {"positive", "negative", "none"}
# An empty head (no prompts, no labels yet) is sigmoid(-50) ~ 2e-22 on every asset: nothing is
# positive until labels train the first real version.
EMPTY_BIAS = -50.0
EMPTY_SOURCE = "default 0.5 (no labels yet)"


@dataclass
class Concept:
    name: str
    description: str | None
    encoder: str
    parent: str | None
    threshold: float
    latest_version: int
    created_dt: datetime
    updated_dt: datetime
    kind: str | None = None
    prompts: list = field(default_factory=list)
    negative_prompts: list = field(default_factory=list)
    positive_labels: int = 0
    negative_labels: int = 0
    threshold_source: str | None = None
    concept_id: str | None = None
    dataset: str | None = None
    regularization: float | None = None
    created_by: str | None = None
    updated_by: str | None = None
    # A built-in's measured quality on the dev set (`concepts/quality.py`); None for user concepts.
    quality: dict | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["created_dt"] = self.created_dt.isoformat()
        d["updated_dt"] = self.updated_dt.isoformat()
        return d


@dataclass
class Version:
    concept: str
    version: int
    kind: str
    encoder: str
    vector_column: str
    dim: int
    scale: float
    bias: float
    link: str
    threshold: float
    prompts: list
    negative_prompts: list
    training: dict
    created_dt: datetime
    weights: list | None = None
    threshold_source: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["created_dt"] = self.created_dt.isoformat()
        if self.weights is None:
            d.pop("weights")
        return d


# -- reading -------------------------------------------------------------------
def _cur(wh):
    return wh.cursor()


def exists(wh, name: str) -> bool:
    return bool(_cur(wh).execute("SELECT 1 FROM catalog.concepts WHERE name = ?", [name]).fetchone())


def _label_counts(con, name: str) -> tuple[int, int]:
    lab = current_labels(con, name)
    return sum(1 for v in lab.values() if v == "positive"), sum(1 for v in lab.values() if v == "negative")


def resolve(wh, ref: str) -> str:
    """The name of the concept `ref` names: its name or its `concept_id` (a UUID)."""
    row = _cur(wh).execute(
        "SELECT name FROM catalog.concepts WHERE name = ? OR concept_id = lower(?) ORDER BY name = ? DESC LIMIT 1",
        [ref, ref, ref]).fetchone()
    if not row:
        raise ConceptNotFound(f"no concept named {ref!r} (and no concept with that id)")
    return row[0]


def get(wh, name: str) -> Concept:
    con = _cur(wh)
    row = con.execute(
        "SELECT name, description, encoder, parent, threshold, latest_version, created_dt, updated_dt, "
        "concept_id, dataset, regularization, created_by, updated_by FROM catalog.concepts WHERE name = ?", [name]
    ).fetchone()
    if not row:
        raise ConceptNotFound(f"no concept named {name!r}")
    c = Concept(*row[:8])
    c.concept_id, c.dataset, c.regularization, c.created_by, c.updated_by = row[8:]
    v = con.execute(
        "SELECT kind, prompts, negative_prompts, training FROM catalog.concept_versions WHERE concept = ? AND version = ?",
        [name, c.latest_version],
    ).fetchone()
    if v:
        c.kind, c.prompts, c.negative_prompts = v[0], json.loads(v[1] or "[]"), json.loads(v[2] or "[]")
        c.threshold_source = _source(json.loads(v[3] or "{}"), c.threshold)
    c.positive_labels, c.negative_labels = _label_counts(con, name)
    if c.kind in ("model", "text") and name in catalogue_names():
        c.quality = quality.of(name, c.encoder, labelled=bool(c.positive_labels or c.negative_labels))
    return c


def catalogue_names() -> set[str]:
    from . import catalogue

    return set(catalogue.BY_NAME)


def list_concepts(wh, parent: str | None = None) -> list[Concept]:
    sql = "SELECT name FROM catalog.concepts"
    rows = _cur(wh).execute(sql + " WHERE parent = ? ORDER BY name", [parent]).fetchall() if parent else \
        _cur(wh).execute(sql + " ORDER BY name").fetchall()
    return [get(wh, r[0]) for r in rows]


def children(wh, name: str) -> list[Concept]:
    get(wh, name)
    return list_concepts(wh, parent=name)


_VERSION_COLS = ("concept, version, kind, encoder, vector_column, dim, scale, bias, link, threshold, "
                 "prompts, negative_prompts, training, created_dt, weights")


def _source(training: dict, threshold: float) -> str:
    """Where a version's threshold came from; versions older than the default rule had 0.5 unless
    the user set one (then it is kept like any user threshold)."""
    if training.get("threshold_source"):
        return training["threshold_source"]
    if training.get("change") == "threshold" or threshold != 0.5:
        return USER
    return "legacy 0.5 (before the default rule; `pixql concept recalibrate`)"


def _version(row, with_weights: bool) -> Version:
    training = json.loads(row[12] or "{}")
    return Version(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                   json.loads(row[10] or "[]"), json.loads(row[11] or "[]"), training,
                   row[13], list(row[14]) if with_weights else None, _source(training, row[9]))


def versions(wh, name: str) -> list[Version]:
    get(wh, name)
    rows = _cur(wh).execute(
        f"SELECT {_VERSION_COLS} FROM catalog.concept_versions WHERE concept = ? ORDER BY version", [name]
    ).fetchall()
    return [_version(r, False) for r in rows]


def version(wh, name: str, number: int | None = None, with_weights: bool = False) -> Version:
    c = get(wh, name)
    n = c.latest_version if number is None else number
    row = _cur(wh).execute(
        f"SELECT {_VERSION_COLS} FROM catalog.concept_versions WHERE concept = ? AND version = ?", [name, n]
    ).fetchone()
    if not row:
        raise ConceptNotFound(f"concept {name!r} has no version {n}")
    return _version(row, with_weights)


def current_labels(con, name: str) -> dict[str, str]:
    """asset id -> 'positive' | 'negative' (the newest label of each asset, withdrawn ones dropped)."""
    rows = con.execute(
        "SELECT coactive_image_id, arg_max(label, created_dt) FROM catalog.concept_labels "
        "WHERE concept = ? GROUP BY 1", [name]
    ).fetchall()
    return {i: lab for i, lab in rows if lab != "none"}


def labels(wh, name: str) -> list[dict]:
    get(wh, name)
    rows = _cur(wh).execute(
        """SELECT l.coactive_image_id, any_value(a.path), arg_max(l.label, l.created_dt),
                  arg_max(l.created_by, l.created_dt), max(l.created_dt)
           FROM catalog.concept_labels l LEFT JOIN catalog.assets a USING (coactive_image_id)
           WHERE l.concept = ? GROUP BY 1 ORDER BY 5, 1""", [name]
    ).fetchall()
    return [
        {"coactive_image_id": r[0], "path": r[1], "label": r[2], "created_by": r[3], "created_dt": r[4].isoformat()}
        for r in rows if r[2] != "none"
    ]


# -- validation ----------------------------------------------------------------
def validate_name(wh, name: str, existing_ok: bool = False) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ConceptError(
            f"invalid concept name {name!r}: lowercase letters, digits and '_', starting with a letter (max 63)"
        )
    if name.endswith("_prob") or re.search(r"_v\d+$", name):
        raise ConceptError(f"invalid concept name {name!r}: names ending in '_prob' or '_v<N>' are reserved for columns")
    con = _cur(wh)
    if con.execute("SELECT 1 FROM duckdb_keywords() WHERE lower(keyword_name) = ?", [name]).fetchone():
        raise ConceptError(f"invalid concept name {name!r}: it is an SQL keyword")
    if not existing_ok and exists(wh, name):
        raise ConceptError(f"concept {name!r} already exists")
    taken = {r[0].lower() for r in con.execute("DESCRIBE coactive_table_adv").fetchall()}
    taken |= set(views.BASE_COLUMNS) | set(views.ADV_BASE_COLUMNS) | {"coactive_table", "coactive_table_adv"}
    if not existing_ok:
        for col in (name, f"{name}_latest_prob", f"{name}_prob"):
            if col in taken:
                raise ConceptError(f"invalid concept name {name!r}: column {col!r} already exists in coactive_table")
    return name


def _threshold(t) -> float | None:
    if t is None:
        return None
    try:
        t = float(t)
    except (TypeError, ValueError):
        raise ConceptError(f"threshold must be a number in [0, 1], got {t!r}") from None
    if not (0.0 <= t <= 1.0):
        raise ConceptError(f"threshold must be in [0, 1], got {t}")
    return t


def default_encoder(wh) -> str:
    row = _cur(wh).execute("SELECT encoder FROM catalog.datasets ORDER BY created_dt, name LIMIT 1").fetchone()
    return row[0] if row else encoders.DEFAULT_ENCODER


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def resolve_assets(wh, items) -> list[str]:
    """Asset ids from ids or paths (as ingested, or resolving to the same absolute path)."""
    from pathlib import Path

    if isinstance(items, str):
        items = [items]
    con = _cur(wh)
    out: list[str] = []
    for item in items or []:
        item = str(item).strip()
        if _UUID.match(item.lower()):
            if con.execute("SELECT 1 FROM catalog.assets WHERE coactive_image_id = ?", [item.lower()]).fetchone():
                out.append(item.lower())
                continue
        cands = {item, str(Path(item).expanduser().resolve())}
        rows = con.execute(
            "SELECT coactive_image_id FROM catalog.assets WHERE list_contains(?, path) ORDER BY 1", [list(cands)]
        ).fetchall()
        if not rows:
            raise ConceptNotFound(f"no asset with id or path {item!r} in this warehouse")
        out += [r[0] for r in rows]
    return list(dict.fromkeys(out))


# -- heads ---------------------------------------------------------------------
def _text_head(con, encoder: str, prompts: list, negatives: list, class_edits: dict | None) -> HeadSpec:
    """The text head, its ConSE class map (if any) edited by the concept's pins and drops."""
    head = text_head(encoder, prompts, negatives, class_names(con, encoder))
    names = memberships.names_for(con, encoder) if head.column == "probs" else None
    if names and len(names) == head.dim:
        head = memberships.apply(head, names, class_edits)
    return head


def _build_head(wh, encoder: str, prompts: list, negatives: list, pos: list[str], neg: list[str],
                class_edits: dict | None = None, regularization: float | None = None) -> HeadSpec:
    con = _cur(wh)
    if pos or neg:
        column = labeled_column(con, encoder)
        dim = existing_encoder_dim(con, encoder, column)
        prior = _text_head(con, encoder, prompts, negatives, class_edits) if prompts else None
        head = labeled_head(con, wh.root, encoder, column, dim, pos, neg, prior, regularization)
        if prior is not None:  # the text side's class map, so it stays inspectable and editable
            head.training = {**head.training, **{k: prior.training[k] for k in ("classes", "class_edits")
                                                 if k in prior.training}}
        return head
    if prompts:
        head = _text_head(con, encoder, prompts, negatives, class_edits)
        cols = catalog.encoder_columns(con, encoder)
        if head.column in cols and cols[head.column] != head.dim:
            raise ConceptError(f"{encoder} stores {head.column} with {cols[head.column]} dims, the head has {head.dim}")
        return head
    raise ConceptError("a concept needs prompts or labelled examples (at least one of them)")


def _empty_head(wh, encoder: str) -> HeadSpec:
    con = _cur(wh)
    column = labeled_column(con, encoder)
    dim = existing_encoder_dim(con, encoder, column)
    return HeadSpec("empty", encoder, column, np.zeros(dim, np.float32), 1.0, EMPTY_BIAS, "logistic",
                    {"method": "none: no prompts or labels yet"})


def _commit(wh, name: str, head: HeadSpec, threshold: float | None, prompts: list, negatives: list,
            new_concept: dict | None = None, label_rows: list | None = None, materialize: bool = True,
            reuse_cache_of: int | None = None, source: str | None = None) -> Concept:
    if wh.read_only:
        raise ConceptError("warehouse opened read-only")
    if threshold is None and head.kind == "empty":
        threshold, source = 0.5, EMPTY_SOURCE
    elif threshold is None:
        threshold, source = calibrate.default_threshold(wh.cursor(), wh.root, head, head.cv)
    else:
        source = source or USER
    head.training = {**head.training, "threshold_source": source}
    with wh.transaction(scores=True) as tx:
        con = tx.con
        now = catalog.now()
        if new_concept is not None:
            catalog.insert(con, "concepts", dict(
                name=name, description=new_concept.get("description"), encoder=head.encoder,
                parent=new_concept.get("parent"), threshold=threshold, latest_version=0, created_dt=now,
                updated_dt=now, concept_id=str(uuid.uuid4()), dataset=new_concept.get("dataset"),
                regularization=new_concept.get("regularization"), created_by=new_concept.get("created_by"),
                updated_by=new_concept.get("created_by")))
        if label_rows:
            catalog.insert_labels(con, name, label_rows, now)
        n = con.execute("SELECT latest_version FROM catalog.concepts WHERE name = ?", [name]).fetchone()[0] + 1
        catalog.insert(con, "concept_versions", dict(
            concept=name, version=n, kind=head.kind, encoder=head.encoder, vector_column=head.column,
            dim=head.dim, weights=head.weights.tolist(), scale=float(head.scale), bias=float(head.bias),
            link=head.link, threshold=threshold, prompts=json.dumps(prompts),
            negative_prompts=json.dumps(negatives), training=json.dumps(head.training), created_dt=now))
        con.execute("UPDATE catalog.concepts SET latest_version = ?, threshold = ?, encoder = ?, updated_dt = ? "
                    "WHERE name = ?", [n, threshold, head.encoder, now, name])
        if reuse_cache_of is not None:
            # Same head, same probabilities: the new version points at the old files.
            con.execute(
                "INSERT INTO catalog.concept_scores (concept, version, seq, path, asset_parts, vector_parts, "
                "row_count, created_dt) SELECT concept, ?, seq, path, asset_parts, vector_parts, "
                "row_count, ? FROM catalog.concept_scores WHERE concept = ? AND version = ?",
                [n, now, name, reuse_cache_of])
        has_cache = con.execute("SELECT count(*) FROM catalog.concept_scores WHERE concept = ? AND version = ?",
                                [name, n]).fetchone()[0]
        if materialize and not has_cache:
            concept_cache.materialize(con, wh.root, [head.as_head(name, n, threshold)])
    return get(wh, name)


def _head_of(v: Version) -> HeadSpec:
    return HeadSpec(v.kind, v.encoder, v.vector_column, np.asarray(v.weights, dtype=np.float32),
                    v.scale, v.bias, v.link, dict(v.training))


# -- writing -------------------------------------------------------------------
def create(wh, name: str, prompts=None, negative_prompts=None, positive=None, negative=None,
           description: str | None = None, threshold: float = DEFAULT_THRESHOLD, encoder: str | None = None,
           parent: str | None = None, created_by: str | None = None, materialize: bool = True,
           dataset: str | None = None, regularization: float | None = None, allow_empty: bool = False) -> Concept:
    """A new concept from prompts and/or labelled examples (ids or paths); version 1.

    `dataset` ties it to one dataset (its encoder is the dataset's); `allow_empty`
    accepts neither prompts nor labels (Coactive's create-then-label flow): version 1
    is an empty head and the first labels that can train one make version 2.
    """
    validate_name(wh, name)
    threshold = _threshold(threshold)
    regularization = _regularization(regularization)
    if dataset is not None:
        dataset_encoder = catalog.dataset_encoder(_cur(wh), dataset)
        if dataset_encoder is None:
            raise ConceptNotFound(f"no dataset named {dataset!r}")
        encoder = encoder or dataset_encoder
    encoder = encoder or default_encoder(wh)
    _check_parent(wh, name, parent)
    prompts, negatives = _prompt_list(prompts), _prompt_list(negative_prompts)
    pos, neg = resolve_assets(wh, positive), resolve_assets(wh, negative)
    _check_overlap(pos, neg)
    if allow_empty and not (prompts or pos or neg):
        head = _empty_head(wh, encoder)
    else:
        head = _build_head(wh, encoder, prompts, negatives, pos, neg, regularization=regularization)
    rows = [(i, "positive", created_by) for i in pos] + [(i, "negative", created_by) for i in neg]
    return _commit(wh, name, head, threshold, prompts, negatives,
                   new_concept={"description": description, "parent": parent, "dataset": dataset,
                                "regularization": regularization, "created_by": created_by},
                   label_rows=rows, materialize=materialize)


def create_from_head(wh, name: str, head: HeadSpec, description: str | None = None,
                     threshold: float = DEFAULT_THRESHOLD, parent: str | None = None,
                     materialize: bool = True, prompts=None, negative_prompts=None) -> Concept:
    """A concept from a linear head built elsewhere (kind 'model': trained elsewhere; kind 'text':
    a built-in's text head, stored with the `prompts` it was built from): weights over one stored
    vector column."""
    validate_name(wh, name)
    cols = catalog.encoder_columns(_cur(wh), head.encoder)
    if cols.get(head.column) != head.dim:
        raise ConceptError(f"encoder {head.encoder!r} has no {head.dim}-dim column {head.column!r} (has {cols})")
    _check_parent(wh, name, parent)
    return _commit(wh, name, head, _threshold(threshold), _prompt_list(prompts), _prompt_list(negative_prompts),
                   new_concept={"description": description, "parent": parent}, materialize=materialize)


def update(wh, name: str, prompts=None, negative_prompts=None, threshold: float | None = None,
           description: str | None = None, parent: str | None = None, materialize: bool = True,
           regularization: float | None = None, updated_by: str | None = None, new_name: str | None = None) -> Concept:
    """Change a concept: prompts or threshold make a new version; description/parent change in place;
    a new `regularization` retrains a labelled head (version N+1)."""
    c = get(wh, name)
    if new_name is not None and new_name != name:
        raise ConceptError(f"renaming a concept is not supported (its name is its SQL column): create "
                           f"{new_name!r} and delete {name!r}")
    if updated_by is not None:
        with wh.write_lock:
            wh.cursor().execute("UPDATE catalog.concepts SET updated_by = ? WHERE name = ?", [updated_by, name])
    retrain = False
    if regularization is not None:
        r = _regularization(regularization)
        with wh.write_lock:
            wh.cursor().execute("UPDATE catalog.concepts SET regularization = ?, updated_dt = ? WHERE name = ?",
                                [r, catalog.now(), name])
        retrain = r != c.regularization and c.kind in ("labeled", "text+labeled")
    if description is not None or parent is not None:
        if parent is not None:
            _check_parent(wh, name, parent or None)
        with wh.write_lock:
            con = wh.cursor()
            if description is not None:
                con.execute("UPDATE catalog.concepts SET description = ?, updated_dt = ? WHERE name = ?",
                            [description, catalog.now(), name])
            if parent is not None:
                con.execute("UPDATE catalog.concepts SET parent = ?, updated_dt = ? WHERE name = ?",
                            [parent or None, catalog.now(), name])
    if retrain and prompts is None and negative_prompts is None:
        c = train(wh, name, materialize=materialize)  # the labelled fit at the new regularization
    if prompts is None and negative_prompts is None and threshold is None:
        return get(wh, name)
    if prompts is None and negative_prompts is None:
        return set_threshold(wh, name, threshold, materialize=materialize)
    new_prompts = _prompt_list(prompts) if prompts is not None else c.prompts
    new_neg = _prompt_list(negative_prompts) if negative_prompts is not None else c.negative_prompts
    lab = current_labels(_cur(wh), name)
    pos = [i for i, v in lab.items() if v == "positive"]
    neg = [i for i, v in lab.items() if v == "negative"]
    head = _build_head(wh, c.encoder, new_prompts, new_neg, pos, neg, _edits(wh, name), c.regularization)
    t = _threshold(threshold) if threshold is not None else _kept_threshold(c)
    return _commit(wh, name, head, t, new_prompts, new_neg, materialize=materialize)


def set_threshold(wh, name: str, threshold: float, materialize: bool = True) -> Concept:
    """A new version with the same head and another threshold."""
    t = _threshold(threshold)
    v = version(wh, name, with_weights=True)
    head = _head_of(v)
    head.training = {**v.training, "derived_from": v.version, "change": "threshold"}
    return _commit(wh, name, head, t, v.prompts, v.negative_prompts, materialize=materialize,
                   reuse_cache_of=v.version)


def recalibrate(wh, name: str, materialize: bool = True) -> Concept:
    """A new version with the same head at the default threshold (`concepts/calibrate.py`), from
    today's stored scores and labels; the concept as it is when the threshold would not change."""
    v = version(wh, name, with_weights=True)
    head = _head_of(v)
    pos, neg = _current_split(wh, name)
    if head.kind in ("labeled", "text+labeled") and len(pos) >= calibrate.MIN_LABELS \
            and len(neg) >= calibrate.MIN_LABELS:
        head.cv = _build_head(wh, v.encoder, v.prompts, v.negative_prompts, pos, neg, _edits(wh, name)).cv
    t, source = calibrate.default_threshold(_cur(wh), wh.root, head, head.cv)
    if abs(t - v.threshold) < 1e-12 and v.threshold_source == source:
        return get(wh, name)
    head.training = {**v.training, "derived_from": v.version, "change": "recalibrate"}
    return _commit(wh, name, head, t, v.prompts, v.negative_prompts, materialize=materialize,
                   reuse_cache_of=v.version, source=source)


def _current_split(wh, name: str) -> tuple[list[str], list[str]]:
    lab = current_labels(_cur(wh), name)
    return [i for i, v in lab.items() if v == "positive"], [i for i, v in lab.items() if v == "negative"]


def _kept_threshold(c: Concept) -> float | None:
    """The threshold a retrained version inherits: the user's, else None (the default rule)."""
    return c.threshold if c.threshold_source == USER else None


def set_labels(wh, name: str, positive=None, negative=None, remove=None, created_by: str | None = None,
               retrain: bool = True, materialize: bool = True) -> Concept:
    """Add positive/negative labels and remove others (ids or paths) as one change.

    With `retrain`, version N+1 is trained from all labels, and labels and head
    commit together (nothing is stored if training fails).  With retrain=False
    the labels are stored without a new version (for feedback loops that label
    one asset at a time and train later with `train`).
    """
    c = get(wh, name)
    pos, neg = resolve_assets(wh, positive), resolve_assets(wh, negative)
    gone = resolve_assets(wh, remove)
    _check_overlap(pos, neg)
    if not (pos or neg or gone):
        raise ConceptError("give at least one positive, negative or removed example")
    rows = ([(i, "positive", created_by) for i in pos] + [(i, "negative", created_by) for i in neg]
            + [(i, "none", created_by) for i in gone])
    return _relabel(wh, c, rows, retrain, materialize)


def add_labels(wh, name: str, positive=None, negative=None, created_by: str | None = None,
               retrain: bool = True, materialize: bool = True) -> Concept:
    """Record labels (ids or paths); see `set_labels`."""
    return set_labels(wh, name, positive, negative, None, created_by, retrain, materialize)


def remove_labels(wh, name: str, items, created_by: str | None = None, retrain: bool = True,
                  materialize: bool = True) -> Concept:
    return set_labels(wh, name, None, None, items, created_by, retrain, materialize)


def _relabel(wh, c: Concept, rows, retrain: bool, materialize: bool) -> Concept:
    if not retrain:
        with wh.write_lock:
            now = catalog.now()
            catalog.insert_labels(wh.cursor(), c.name, rows, now)
        return get(wh, c.name)
    lab = current_labels(_cur(wh), c.name)
    for i, value, _ in rows:
        if value == "none":
            lab.pop(i, None)
        else:
            lab[i] = value
    pos = [i for i, v in lab.items() if v == "positive"]
    neg = [i for i, v in lab.items() if v == "negative"]
    if c.kind == "empty" and not c.prompts and (len(pos) < MIN_POSITIVE or len(neg) < MIN_NEGATIVE):
        # Coactive's flow labels a few at a time: keep them until there are enough to train on.
        return _relabel(wh, c, rows, False, materialize)
    edits = _edits(wh, c.name)
    if pos or neg:
        head = _build_head(wh, c.encoder, c.prompts, c.negative_prompts, pos, neg, edits, c.regularization)
    else:
        v = version(wh, c.name, with_weights=True)
        head = _build_head(wh, c.encoder, c.prompts, c.negative_prompts, [], [], edits) if c.prompts else _head_of(v)
    return _commit(wh, c.name, head, _kept_threshold(c), c.prompts, c.negative_prompts, label_rows=rows,
                   materialize=materialize)


def train(wh, name: str, materialize: bool = True) -> Concept:
    """Version N+1 from the current prompts and all current labels."""
    c = get(wh, name)
    lab = current_labels(_cur(wh), name)
    pos = [i for i, v in lab.items() if v == "positive"]
    neg = [i for i, v in lab.items() if v == "negative"]
    head = _build_head(wh, c.encoder, c.prompts, c.negative_prompts, pos, neg, _edits(wh, name), c.regularization)
    return _commit(wh, name, head, _kept_threshold(c), c.prompts, c.negative_prompts, materialize=materialize)


def _edits(wh, name: str) -> dict:
    """The concept's class pins and drops (its newest version's), which every retrain keeps."""
    row = _cur(wh).execute("SELECT v.training FROM catalog.concept_versions v JOIN catalog.concepts c "
                           "ON v.concept = c.name AND v.version = c.latest_version WHERE c.name = ?",
                           [name]).fetchone()
    tr = json.loads(row[0]) if row and isinstance(row[0], str) else (row[0] if row else {})
    return {k: dict.fromkeys(e) for k, e in memberships.edits_of(tr).items()}


def edit_classes(wh, name: str, pin=(), drop=(), reset=(), materialize: bool = True) -> Concept:
    """Pin (membership 1), drop (0) or reset classes of the concept's class map: version N+1."""
    return memberships.edit(wh, name, pin, drop, reset, materialize)


def delete(wh, name: str) -> None:
    get(wh, name)
    if children(wh, name):
        raise ConceptError(f"concept {name!r} has child concepts; delete or re-parent them first")
    with wh.write_lock:
        with wh.transaction(scores=True) as tx:
            for table, col in (("concept_scores", "concept"), ("concept_versions", "concept"),
                               ("concept_labels", "concept"), ("concepts", "name")):
                tx.con.execute(f"DELETE FROM catalog.{table} WHERE {col} = ?", [name])


def materialize(wh, names=None, all_versions: bool = False, scorer=None, force: bool = False) -> list[tuple[str, int]]:
    """Bulk-score (numpy) every named concept's newest version (or all versions) lacking a complete cache
    (every one with `force`); `scorer` computes the matrix products elsewhere (concepts/ray_scoring.py)."""
    if isinstance(names, str):
        names = [names]
    con = _cur(wh)
    wanted = set(names) if names else {c.name for c in list_concepts(wh)}
    for n in wanted:
        get(wh, n)
    latest = dict(con.execute("SELECT name, latest_version FROM catalog.concepts").fetchall())
    parts = catalog.part_paths(con, "assets")
    todo = [
        h for h in concept_cache.load_heads(con)
        if h.concept in wanted and (all_versions or h.version == latest.get(h.concept))
        and (force or concept_cache.cache_status(con, h, parts) != "complete")
    ]
    if not todo:
        return []
    with wh.write_lock:
        with wh.transaction(scores=True) as tx:
            concept_cache.materialize(tx.con, wh.root, todo, **({"scorer": scorer} if scorer else {}))
    return [(h.concept, h.version) for h in todo]


def autosample_negatives(wh, name: str, n: int, dataset: str | None = None, seed: int = 0) -> list[str]:
    """`n` unlabeled assets drawn at random (repeatably) from the concept's dataset (or all of its
    encoder's assets): Coactive's `autosampledNumNegativeLabels`, for concepts whose positives are rare."""
    c = get(wh, name)
    if n < 0:
        raise ConceptError("the number of negatives to sample cannot be negative")
    if n == 0:
        return []
    labeled = list(current_labels(_cur(wh), name))
    sql = ("SELECT a.coactive_image_id FROM catalog.assets a JOIN catalog.embeddings e "
           "ON e.coactive_image_id = a.coactive_image_id AND e.encoder = ? "
           f"WHERE NOT {catalog.in_list('a.coactive_image_id')}")
    args: list = [c.encoder, labeled]
    if dataset or c.dataset:
        sql += " AND a.dataset = ?"
        args.append(dataset or c.dataset)
    rows = _cur(wh).execute(sql + " ORDER BY hash(a.coactive_image_id || ?) LIMIT ?",
                            args + [str(seed), int(n)]).fetchall()
    return [r[0] for r in rows]


# -- helpers -------------------------------------------------------------------
def _regularization(r) -> float | None:
    if r is None:
        return None
    try:
        r = float(r)
    except (TypeError, ValueError):
        raise ConceptError(f"regularization must be a positive number, got {r!r}") from None
    if not (r > 0 and np.isfinite(r)):
        raise ConceptError(f"regularization must be a positive number, got {r}")
    return r


def _prompt_list(p) -> list[str]:
    if p is None:
        return []
    if isinstance(p, str):
        p = [p]
    return [s.strip() for s in p if isinstance(s, str) and s.strip()]


def _check_overlap(pos: list[str], neg: list[str]) -> None:
    both = set(pos) & set(neg)
    if both:
        raise ConceptError(f"{len(both)} asset(s) given as both positive and negative, e.g. {sorted(both)[0]}")


def _check_parent(wh, name: str, parent: str | None) -> None:
    if not parent:
        return
    if parent == name:
        raise ConceptError("a concept cannot be its own parent")
    p = get(wh, parent)
    if p.parent:
        raise ConceptError(f"taxonomy has two levels: {parent!r} already has parent {p.parent!r}")
    if exists(wh, name) and children(wh, name):
        raise ConceptError(f"{name!r} has children, so it cannot get a parent (two levels)")
