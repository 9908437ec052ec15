"""What a change to a folder of specs does, model by model: added, removed or changed; which spec fields moved
(old → new) and which derived-feature functions' source changed; and what the merge would rebuild.

Pure: specs (and the source of the functions they name) in, records out. Every asset of the data and training
layers carries the spec's digest as its code version (`defs.conventions.SPEC_VERSIONED`), so any change the
digest sees moves them all; what that costs differs by layer:

- `raw`, `features`: partitions materialized from the merge on are built by the new spec; the stored ones keep
  the old code version (the UI shows them changed) and are rebuilt only by a backfill, which a change to the
  data layer calls for;
- `training_set` onward: the next retrain trains a new version (the retrain skips only when data, spec digest
  and training code are all unchanged), which the gates then judge against the champion.

Serving and monitoring follow the champion version, and `schedule` changes when runs start, not what they
produce: neither rebuilds anything.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ml_platform.core.recipe import ReadSource, source_digest
from ml_platform.spec import ModelSpec

Kind = Literal["added", "removed", "changed", "unchanged"]

# Top-level spec sections whose change alters the stored data (raw → features), so stored partitions are stale.
DATA_LAYER = ("source", "timestamp", "key", "partitions", "target", "features", "expectations")
# Sections whose change alters the trained model or its verdict: a candidate is trained and gated for them.
MODEL_LAYER = (*DATA_LAYER, "task", "training", "gates")
# Sections the digest leaves out, or that follow the champion: nothing is rebuilt for them.
NOT_REBUILT = ("schedule",)


@dataclass(frozen=True)
class FieldChange:
    """One spec field that differs: its dotted path and both values (None where absent)."""

    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class FunctionChange:
    """A derived-feature function whose source differs between base and head (digests of its source text; None
    where the function cannot be found)."""

    feature: str
    function: str
    old_digest: str | None
    new_digest: str | None


@dataclass(frozen=True)
class Rebuild:
    """What the merge would rebuild for some stages, in words a reviewer reads."""

    stages: tuple[str, ...]
    what: str


@dataclass(frozen=True)
class ModelChange:
    """One model's change between base and head."""

    name: str
    kind: Kind
    base: ModelSpec | None = None
    head: ModelSpec | None = None
    fields: tuple[FieldChange, ...] = ()
    functions: tuple[FunctionChange, ...] = ()
    rebuilds: tuple[Rebuild, ...] = ()

    @property
    def touches_data(self) -> bool:
        return bool(self.functions) or any(_section(f.path) in DATA_LAYER for f in self.fields)

    @property
    def needs_candidate(self) -> bool:
        """A candidate must be trained and gated: the model is new, or its training or its gates change."""
        if self.kind == "added":
            return True
        return self.kind == "changed" and (
            bool(self.functions) or any(_section(f.path) in MODEL_LAYER for f in self.fields)
        )


@dataclass(frozen=True)
class Changes:
    """Every model's change, in name order."""

    models: tuple[ModelChange, ...] = field(default_factory=tuple)

    @property
    def relevant(self) -> tuple[ModelChange, ...]:
        """The models whose change rebuilds something or is a new or removed model."""
        return tuple(m for m in self.models if m.kind != "unchanged" and (m.kind != "changed" or m.rebuilds))

    @property
    def candidates(self) -> tuple[ModelChange, ...]:
        return tuple(m for m in self.models if m.needs_candidate)


def compare(
    base: Sequence[ModelSpec],
    head: Sequence[ModelSpec],
    *,
    read_base: ReadSource,
    read_head: ReadSource,
    stored_days: Mapping[str, int] | None = None,
) -> Changes:
    """Each model of base and head compared: fields, derived functions (their source as each side has it) and
    what would be rebuilt. `stored_days` (model → stored `features` partitions in production) sizes backfills."""
    before, after = {s.name: s for s in base}, {s.name: s for s in head}
    models = []
    for name in sorted(before.keys() | after.keys()):
        old, new = before.get(name), after.get(name)
        if old is None:
            models.append(ModelChange(name, "added", head=new, rebuilds=(_new_model(),)))
            continue
        if new is None:
            models.append(ModelChange(name, "removed", base=old, rebuilds=(_removed(),)))
            continue
        fields = tuple(field_changes(_plain(old), _plain(new)))
        functions = tuple(function_changes(old, new, read_base, read_head))
        kind: Kind = "changed" if fields or functions else "unchanged"
        change = ModelChange(name, kind, old, new, fields, functions)
        models.append(_with_rebuilds(change, (stored_days or {}).get(name)))
    return Changes(tuple(models))


def field_changes(old: Any, new: Any, path: str = "") -> list[FieldChange]:
    """The leaves that differ between two plain values (dicts compared key by key; lists and scalars whole)."""
    if isinstance(old, dict) and isinstance(new, dict):
        found: list[FieldChange] = []
        for key in sorted(old.keys() | new.keys(), key=str):
            found += field_changes(old.get(key), new.get(key), f"{path}.{key}" if path else str(key))
        return found
    return [] if old == new else [FieldChange(path, old, new)]


def function_changes(
    old: ModelSpec, new: ModelSpec, read_base: ReadSource, read_head: ReadSource
) -> list[FunctionChange]:
    """Derived features of the head whose function's source differs from the base's (a feature the base does not
    have is a field change already, not repeated here)."""
    before = {d.name: d.function for d in old.features.derived}
    changes = []
    for derived in new.features.derived:
        if derived.name not in before:
            continue
        old_digest = source_digest(before[derived.name], read_base)
        new_digest = source_digest(derived.function, read_head)
        if old_digest != new_digest or before[derived.name] != derived.function:
            changes.append(FunctionChange(derived.name, derived.function, old_digest, new_digest))
    return changes


def _with_rebuilds(change: ModelChange, stored: int | None) -> ModelChange:
    if change.kind != "changed":
        return change
    sections = {_section(f.path) for f in change.fields}
    if sections <= set(NOT_REBUILT) and not change.functions:
        return change
    days = f"the {stored} stored days" if stored is not None else "the stored days"
    rebuilds = []
    if change.touches_data:
        what = f"{days} were built by the old spec: backfill them to rebuild; new days use the new spec"
    else:
        what = f"code version only: {days} keep their data (the UI shows them changed; no backfill needed)"
    rebuilds.append(Rebuild(("raw", "features"), what))
    rebuilds.append(Rebuild(("training_set", "model", "evaluation", "champion"), "next retrain: a new version, gated"))
    return ModelChange(
        change.name, change.kind, change.base, change.head, change.fields, change.functions, tuple(rebuilds)
    )


def _new_model() -> Rebuild:
    return Rebuild(("every stage",), "a new model: its data from the start of its partitions, then its first version")


def _removed() -> Rebuild:
    return Rebuild((), "removed: its assets leave the graph; its registry, storage and endpoint stay until removed")


def _section(path: str) -> str:
    return path.split(".", 1)[0]


def _plain(spec: ModelSpec) -> dict[str, Any]:
    """The spec as YAML would say it (by alias, defaults included, without where it came from)."""
    return spec.model_dump(mode="json", by_alias=True, exclude={"path", "deprecations"})
