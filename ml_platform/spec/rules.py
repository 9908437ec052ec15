"""Rules across fields that pydantic cannot express, one function per spec section.

Each returns problems as (field path, found, allowed); `problems` runs them all, so one message lists every
mistake of a file.
"""

from __future__ import annotations

import difflib
from typing import Any

from ml_platform.core.sources import known_columns
from ml_platform.spec.sections import ModelSpec

Problem = tuple[str, Any, str]


def problems(spec: ModelSpec) -> list[Problem]:
    """Every cross-field problem of a spec, in the order of its sections."""
    found: list[Problem] = []
    for rule in (target_and_features, source_columns, gates, monitoring, serving, partitions, training):
        found += rule(spec)
    return found


def target_and_features(spec: ModelSpec) -> list[Problem]:
    """One way to compute the target; features listed once, never the target, derived ones importable."""
    found: list[Problem] = []
    target, features = spec.target, spec.features
    if (target.column is None) == (target.expression is None):
        found.append(("target", target.model_dump(exclude_defaults=True),
                      "exactly one of 'target.column' or 'target.expression' (e.g. 'arr_delay > 15')"))
    if not features.names:
        found.append(("features", "no features", "at least one of features.numeric, .categorical, .derived"))
    seen: set[str] = set()
    for field, names in (("numeric", features.numeric), ("categorical", features.categorical),
                         ("derived", [d.name for d in features.derived])):
        for i, name in enumerate(names):
            if name in seen:
                found.append((f"features.{field}[{i}]", name, "each feature listed once"))
            seen.add(name)
            if name == target.name or name in target.inputs:
                found.append((f"features.{field}[{i}]", name,
                              "a feature that is not the target or computed from it (that would leak it)"))
    return found + _derived_functions(spec)


def _derived_functions(spec: ModelSpec) -> list[Problem]:
    found: list[Problem] = []
    for i, derived in enumerate(spec.features.derived):
        try:
            function = derived.load()
        except (ImportError, AttributeError) as error:
            found.append((f"features.derived[{i}].function", derived.function,
                          f"an importable 'module:function' ({error})"))
            continue
        if not callable(function):
            found.append((f"features.derived[{i}].function", derived.function, "a callable"))
    return found


def source_columns(spec: ModelSpec) -> list[Problem]:
    """Every column the spec names exists, when the source knows its columns without reading data."""
    columns = known_columns(spec.source)
    if columns is None:
        return []
    columns = set(columns)
    available = sorted(columns)
    target, features = spec.target, spec.features
    checks = [(f"features.numeric[{i}]", n) for i, n in enumerate(features.numeric)]
    checks += [(f"features.categorical[{i}]", n) for i, n in enumerate(features.categorical)]
    checks += [("timestamp", spec.timestamp)]
    checks += [("target.column" if target.column else "target.expression", n) for n in target.inputs]
    checks += [(f"expectations.columns.{n}", n) for n in spec.expectations.columns]
    if spec.key:
        checks.append(("key", spec.key))
    found: list[Problem] = []
    for field, name in checks:
        if name not in columns:
            hint = difflib.get_close_matches(name, available, n=1)
            found.append((field, name, f"a column of the {spec.source.kind} source"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "")
                          + f": {', '.join(available)}"))
    return found


def gates(spec: ModelSpec) -> list[Problem]:
    """Slices and the fairness group are categorical (or the target): the metric is computed per value."""
    categorical = set(spec.features.all_categorical) | {spec.target.name}
    allowed = f"a categorical feature: {', '.join(sorted(categorical))}"
    found: list[Problem] = [("gates.slices", name, allowed) for name in spec.gates.slices if name not in categorical]
    if spec.gates.fairness and spec.gates.fairness.group not in categorical:
        found.append(("gates.fairness.group", spec.gates.fairness.group, allowed))
    return found


def monitoring(spec: ModelSpec) -> list[Problem]:
    """Drift ignores only what is monitored, and fails no earlier than it warns."""
    found: list[Problem] = []
    drift, names = spec.monitoring.drift, spec.features.names
    for i, name in enumerate(drift.ignore):
        if name not in [*names, "prediction"]:
            found.append((f"monitoring.drift.ignore[{i}]", name, f"a feature or 'prediction': {', '.join(names)}"))
    if drift.fail < drift.warn:
        found.append(("monitoring.drift.fail", drift.fail,
                      f"a threshold at least monitoring.drift.warn ({drift.warn})"))
    return found


def serving(spec: ModelSpec) -> list[Problem]:
    """An online trial needs the local endpoint: a Docker image carries one model."""
    if spec.serving.rollout.mode != "none" and spec.serving.target != "local":
        return [("serving.rollout.mode", spec.serving.rollout.mode,
                 "'none' when serving.target is docker (an image carries one model; use target: local "
                 "for shadow or canary)")]
    return []


def partitions(spec: ModelSpec) -> list[Problem]:
    """A start date unless the source has its own calendar; an end after it."""
    found: list[Problem] = []
    start, end = spec.partitions.start, spec.partitions.end
    if start is None and spec.source.needs_start:
        found.append(("partitions.start", None, "a date such as 2024-01-01 (required for this source)"))
    if start and end and end <= start:
        found.append(("partitions.end", str(end), "a date after partitions.start"))
    return found


def training(spec: ModelSpec) -> list[Problem]:
    """The window fits the cadence and leaves days to train on after validation and test."""
    found: list[Problem] = []
    window = spec.training.window_days
    if spec.training.cadence == "weekly" and window % 7:
        found.append(("training.window_days", window,
                      "a whole number of weeks (a multiple of 7) when training.cadence is weekly"))
    if spec.training.validation_days + spec.training.test_days >= window:
        found.append(("training.window_days", window, "more days than training.validation_days + training.test_days"))
    return found
