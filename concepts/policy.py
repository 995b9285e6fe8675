"""Moderation policies: per-category thresholds, a review band and a similar-image threshold.

A policy is written the way Cloudinary writes Rekognition overrides,

    strict:female_underwear:0.85:explicit_nudity:0.7:revealing_clothes:ignore

(the policy name, then category:value pairs), or as JSON
`{"name", "thresholds": {category: value}, "review_band", "similarity"}`.
Every category starts at 0.5.  A top-level category's value applies to its
children; a child named explicitly keeps its own value whatever the order (the
more specific setting wins).  `ignore` drops a category from the check.  Two
keys that are not categories may appear in the string form too:
`review_band` (how far below a threshold a score still goes to human review)
and `similarity` (cosine similarity at which a feedback-listed image's verdict
carries over).

Policies are stored in `catalog.moderation_policies`, one row per version; a
change makes version N+1 and decisions record the version they used.  The
policy named `default` exists without being stored (version 0) until someone
stores one under that name.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from warehouse.errors import Invalid, NotFound

from . import taxonomy

DEFAULT_THRESHOLD = 0.5
DEFAULT_REVIEW_BAND = 0.1
DEFAULT_SIMILARITY = 0.85
DEFAULT_NAME = "default"
SETTINGS = ("review_band", "similarity")
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


class PolicyError(Invalid):
    """A malformed policy; the message names the field at fault (HTTP 400)."""


class PolicyNotFound(NotFound):
    pass


@dataclass
class Policy:
    name: str = DEFAULT_NAME
    # As given: category -> threshold, or None for `ignore`.
    overrides: dict[str, float | None] = field(default_factory=dict)
    review_band: float = DEFAULT_REVIEW_BAND
    similarity: float = DEFAULT_SIMILARITY
    description: str | None = None
    version: int = 0
    created_dt: datetime | None = None
    created_by: str | None = None
    # An inline policy (Cloudinary's `aws_rek:...` string naming no stored policy): not stored,
    # its settings are the string's on top of the defaults.
    inline: bool = False

    def thresholds(self) -> dict[str, float]:
        """Effective threshold per checked category (ignored ones are absent)."""
        eff: dict[str, float | None] = {c: DEFAULT_THRESHOLD for c in taxonomy.CATEGORIES}
        # Parents first, then children, so the more specific setting wins.
        for cat, value in self.overrides.items():
            if taxonomy.parent(cat) is None:
                eff[cat] = value
                for child in taxonomy.children(cat):
                    eff[child] = value
        for cat, value in self.overrides.items():
            if taxonomy.parent(cat) is not None:
                eff[cat] = value
        return {c: v for c, v in eff.items() if v is not None}

    def spec(self) -> str:
        """The canonical string form (round-trips through `parse_spec`)."""
        parts = [self.name]
        for cat, value in self.overrides.items():
            parts += [cat, "ignore" if value is None else _fmt(value)]
        if self.review_band != DEFAULT_REVIEW_BAND:
            parts += ["review_band", _fmt(self.review_band)]
        if self.similarity != DEFAULT_SIMILARITY:
            parts += ["similarity", _fmt(self.similarity)]
        return ":".join(parts)

    def fingerprint(self) -> str:
        """Hash of what decides verdicts (not name or version): the result-cache key part."""
        body = json.dumps(
            {"t": sorted(self.thresholds().items()), "r": self.review_band, "s": self.similarity},
            separators=(",", ":"),
        )
        return hashlib.sha256(body.encode()).hexdigest()[:16]

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "version": self.version,
            "spec": self.spec(),
            "thresholds": {c: ("ignore" if v is None else v) for c, v in self.overrides.items()},
            "effective_thresholds": self.thresholds(),
            "review_band": self.review_band,
            "similarity": self.similarity,
            "description": self.description,
            "created_dt": self.created_dt,
            "created_by": self.created_by,
            "inline": self.inline,
        }


def _fmt(v: float) -> str:
    return f"{v:g}"


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PolicyError(
            f"invalid policy name {name!r}: a letter, then letters, digits, '_' or '-' (at most 64)"
        )
    return name


def _unit(key: str, raw, allow_ignore: bool) -> float | None:
    if allow_ignore and isinstance(raw, str) and raw.strip().lower() == "ignore":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        what = "a number between 0 and 1" + (" or 'ignore'" if allow_ignore else "")
        raise PolicyError(f"value for {key!r} must be {what}, got {raw!r}") from None
    if not 0.0 <= value <= 1.0 or value != value:
        raise PolicyError(f"value for {key!r} must be between 0 and 1, got {raw!r}")
    return value


def _apply(policy: Policy, key: str, raw) -> None:
    if key in SETTINGS:
        setattr(policy, key, _unit(key, raw, allow_ignore=False))
        return
    if key not in taxonomy.CATEGORIES:
        raise PolicyError(
            f"unknown category {key!r}; known categories: {', '.join(taxonomy.CATEGORIES)}"
        )
    if key in policy.overrides:
        raise PolicyError(f"category {key!r} is set twice")
    policy.overrides[key] = _unit(key, raw, allow_ignore=True)


def parse_spec(text: str, base: Policy | None = None) -> Policy:
    """`name:cat:value:cat:value...` -> Policy (overrides layered on `base` if given)."""
    if not isinstance(text, str) or not text.strip():
        raise PolicyError("empty policy string; expected <policy>[:<category>:<value>]...")
    fields = [f.strip() for f in text.strip().split(":")]
    name, pairs = fields[0], fields[1:]
    check_name(name)
    if len(pairs) % 2:
        raise PolicyError(
            f"odd number of fields after the policy name: {pairs[-1]!r} has no value "
            "(expected <category>:<value> pairs)"
        )
    policy = _copy(base, name) if base else Policy(name=name)
    given: set[str] = set()
    for key, raw in zip(pairs[::2], pairs[1::2]):
        if not key:
            raise PolicyError("empty category name in policy string")
        if key in given:
            raise PolicyError(f"{key!r} is set twice")
        given.add(key)
        policy.overrides.pop(key, None)
        _apply(policy, key, raw)
    return policy


def from_json(obj: dict, base: Policy | None = None) -> Policy:
    """`{"name", "thresholds": {cat: value|"ignore"}, "review_band", "similarity", "description"}`."""
    if not isinstance(obj, dict):
        raise PolicyError("a policy must be a JSON object")
    unknown = set(obj) - {"name", "thresholds", "review_band", "similarity", "description", "spec"}
    if unknown:
        raise PolicyError(f"unknown policy field(s): {', '.join(sorted(unknown))}")
    if obj.get("spec"):
        policy = parse_spec(obj["spec"], base)
    else:
        name = check_name(obj.get("name") or (base.name if base else ""))
        policy = _copy(base, name) if base else Policy(name=name)
    if obj.get("name") and obj["name"] != policy.name:
        raise PolicyError(f"name {obj['name']!r} disagrees with the spec's {policy.name!r}")
    thresholds = obj.get("thresholds") or {}
    if not isinstance(thresholds, dict):
        raise PolicyError("thresholds must be an object {category: value}")
    for key, raw in thresholds.items():
        policy.overrides.pop(key, None)
        _apply(policy, key, raw)
    for key in SETTINGS:
        if obj.get(key) is not None:
            _apply(policy, key, obj[key])
    if obj.get("description") is not None:
        policy.description = str(obj["description"])[:1000]
    return policy


def _copy(base: Policy, name: str) -> Policy:
    return Policy(name=name, overrides=dict(base.overrides), review_band=base.review_band,
                  similarity=base.similarity, description=base.description, version=base.version)


# -- storage -----------------------------------------------------------------------------------
_COLUMNS = "name, version, overrides, review_band, similarity, description, created_dt, created_by"


def _row_to_policy(row) -> Policy:
    name, version, overrides, band, sim, desc, created, by = row
    raw = json.loads(overrides) if isinstance(overrides, str) else overrides
    return Policy(name, {k: v for k, v in raw.items()}, band, sim, desc, version, created, by)


def get(con, name: str, version: int | None = None) -> Policy:
    """A stored policy (latest version unless given); `default` exists even if never stored."""
    sql = f"SELECT {_COLUMNS} FROM catalog.moderation_policies WHERE name = ? AND deleted_dt IS NULL"
    args: list = [name]
    if version is not None:
        sql += " AND version = ?"
        args.append(version)
    row = con.execute(sql + " ORDER BY version DESC LIMIT 1", args).fetchone()
    if row:
        return _row_to_policy(row)
    if name == DEFAULT_NAME and not version:
        return Policy()
    if version is not None:
        raise PolicyNotFound(f"policy {name!r} has no version {version}")
    raise PolicyNotFound(f"unknown policy {name!r}; create it first (`pixql policy create {name}:...`) or use 'default'")


def versions(con, name: str) -> list[Policy]:
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM catalog.moderation_policies WHERE name = ? ORDER BY version", [name]
    ).fetchall()
    return [_row_to_policy(r) for r in rows]


def list_all(con) -> list[Policy]:
    rows = con.execute(
        f"""SELECT {_COLUMNS} FROM catalog.moderation_policies p WHERE deleted_dt IS NULL
            AND version = (SELECT max(version) FROM catalog.moderation_policies q WHERE q.name = p.name)
            ORDER BY name"""
    ).fetchall()
    out = [_row_to_policy(r) for r in rows]
    if not any(p.name == DEFAULT_NAME for p in out):
        out.insert(0, Policy())
    return out


def save(con, policy: Policy, created_by: str | None = None) -> Policy:
    """Store `policy` as the next version of its name; an unchanged policy keeps its version."""
    from warehouse import catalog

    check_name(policy.name)
    latest = con.execute(
        f"SELECT {_COLUMNS}, deleted_dt FROM catalog.moderation_policies WHERE name = ? ORDER BY version DESC LIMIT 1",
        [policy.name],
    ).fetchone()
    if latest and latest[-1] is None:
        current = _row_to_policy(latest[:-1])
        if (current.overrides, current.review_band, current.similarity, current.description) == (
            policy.overrides, policy.review_band, policy.similarity, policy.description
        ):
            return current
    version = (latest[1] if latest else 0) + 1
    now = catalog.now()
    con.execute(
        f"INSERT INTO catalog.moderation_policies ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [policy.name, version, json.dumps(policy.overrides), policy.review_band, policy.similarity,
         policy.description, now, created_by],
    )
    return get(con, policy.name, version)


def delete(con, name: str) -> bool:
    """Hide a policy from use; its versions stay so old decisions still name what they used."""
    from warehouse import catalog

    row = con.execute(
        "UPDATE catalog.moderation_policies SET deleted_dt = ? WHERE name = ? AND deleted_dt IS NULL RETURNING name",
        [catalog.now(), name],
    ).fetchone()
    return row is not None


def resolve(con, spec: str | dict | None) -> Policy:
    """What a moderation request names: a stored policy, optionally with ad-hoc overrides on top.

    `"strict"` is the stored policy; `"strict:weapons:0.3"` is it with weapons at 0.3
    (not stored; its version stays the base's, its fingerprint differs).  A string with
    overrides whose name is no stored policy is an inline policy, as Cloudinary sends
    (`aws_rek:female_underwear:0.85:explicit_nudity:0.7`): the overrides on top of the
    defaults, version 0, `inline` set; a bare unknown name is still an error (a typo).
    """
    if spec is None or spec == "":
        return get(con, DEFAULT_NAME)
    if isinstance(spec, dict):
        base = get(con, check_name(spec.get("name") or DEFAULT_NAME))
        return from_json(spec, base)
    name = spec.strip().split(":", 1)[0].strip()
    try:
        base = get(con, check_name(name))
    except PolicyNotFound:
        if ":" not in spec:
            raise
        inline = parse_spec(spec, Policy(name=name))
        inline.inline = True
        return inline
    return parse_spec(spec, base) if ":" in spec else base
