"""Rules across fields that pydantic cannot express, one function per spec section.

Each returns problems as (field path, found, allowed); `problems` runs them all, so one message lists every
mistake of a file.
"""

from __future__ import annotations

import difflib
from datetime import date, timedelta
from typing import Any

from ml_platform.core.sources import known_columns, nycflights13
from ml_platform.spec.sections import ModelSpec
from ml_platform.spec.target_rules import metrics, target_task

Problem = tuple[str, Any, str]


def problems(spec: ModelSpec) -> list[Problem]:
    """Every cross-field problem of a spec, in the order of its sections."""
    found: list[Problem] = []
    for rule in (
        target_and_features,
        target_task,
        metrics,
        source_columns,
        gates,
        monitoring,
        serving,
        partitions,
        training,
        cadences,
        training_range,
    ):
        found += rule(spec)
    return found


def target_and_features(spec: ModelSpec) -> list[Problem]:
    """One way to compute the target; features listed once, never the target, derived ones importable."""
    found: list[Problem] = []
    target, features = spec.target, spec.features
    if (target.column is None) == (target.expression is None):
        found.append(
            (
                "target",
                target.model_dump(exclude_defaults=True),
                "exactly one of 'target.column' or 'target.expression' (e.g. 'arr_delay > 15')",
            )
        )
    if not features.names:
        found.append(("features", "no features", "at least one of features.numeric, .categorical, .derived"))
    seen: set[str] = set()
    inputs = set(target.inputs)  # parsed once, not once per feature
    for field, names in (
        ("numeric", features.numeric),
        ("categorical", features.categorical),
        ("derived", [d.name for d in features.derived]),
    ):
        for i, name in enumerate(names):
            if name in seen:
                found.append((f"features.{field}[{i}]", name, "each feature listed once"))
            seen.add(name)
            if name == target.name or name in inputs:
                found.append(
                    (
                        f"features.{field}[{i}]",
                        name,
                        "a feature that is not the target or computed from it (that would leak it)",
                    )
                )
    return found + _derived_functions(spec)


def _derived_functions(spec: ModelSpec) -> list[Problem]:
    found: list[Problem] = []
    for i, derived in enumerate(spec.features.derived):
        try:
            function = derived.load()
        except (ImportError, AttributeError) as error:
            found.append(
                (f"features.derived[{i}].function", derived.function, f"an importable 'module:function' ({error})")
            )
            continue
        if not callable(function):
            found.append((f"features.derived[{i}].function", derived.function, "a callable"))
    return found


def source_columns(spec: ModelSpec) -> list[Problem]:
    """Every column the spec names exists, when the source knows its columns without reading data."""
    known = known_columns(spec.source)
    if known is None:
        return []
    return missing_columns(spec, known, f"the {spec.source.kind} source")


def named_columns(spec: ModelSpec) -> list[tuple[str, str]]:
    """Every column the spec names, with the field that names it: features, timestamp, target inputs, the
    expectations' columns and the key."""
    target, features = spec.target, spec.features
    named = [(f"features.numeric[{i}]", n) for i, n in enumerate(features.numeric)]
    named += [(f"features.categorical[{i}]", n) for i, n in enumerate(features.categorical)]
    named += [("timestamp", spec.timestamp)]
    named += [("target.column" if target.column else "target.expression", n) for n in target.inputs]
    named += [(f"expectations.columns.{n}", n) for n in spec.expectations.columns]
    if spec.key:
        named.append(("key", spec.key))
    return named


def missing_columns(spec: ModelSpec, known: list[str], where: str) -> list[Problem]:
    """The columns the spec names that are not among `known` (the columns of `where`), each with a close match."""
    columns = set(known)
    available = sorted(columns)
    found: list[Problem] = []
    for field, name in named_columns(spec):
        if name not in columns:
            hint = difflib.get_close_matches(name, available, n=1)
            found.append(
                (
                    field,
                    name,
                    f"a column of {where}"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f": {', '.join(available)}",
                )
            )
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
        found.append(
            ("monitoring.drift.fail", drift.fail, f"a threshold at least monitoring.drift.warn ({drift.warn})")
        )
    return found


def serving(spec: ModelSpec) -> list[Problem]:
    """An online trial needs the local endpoint: a Docker image carries one model. The prediction log keeps
    what monitoring reads (see `prediction_log`)."""
    found: list[Problem] = []
    if spec.serving.rollout.mode != "none" and spec.serving.target != "local":
        found.append(
            (
                "serving.rollout.mode",
                spec.serving.rollout.mode,
                "'none' when serving.target is docker (an image carries one model; use target: local "
                "for shadow or canary)",
            )
        )
    return found + prediction_log(spec)


# How long a data partition lasts: monitoring reads the log rows of one partition per run, once it is over.
_PARTITION_SPAN = {
    "hourly": timedelta(hours=1),
    "daily": timedelta(days=1),
    "weekly": timedelta(weeks=1),
    "monthly": timedelta(days=31),
}


def log_lookback(spec: ModelSpec) -> tuple[timedelta, str]:
    """How far back monitoring reads the prediction log, and the sum that says why: a partition's rows are read
    by `<model>/drift` once the partition is over and by `<model>/performance` once its labels are in
    (`monitoring.performance.label_delay` later), and a day's paired comparison keeps counting for the
    rollback window after a promotion, or for an online trial's `trial_days`."""
    performance, rollout, cadence = spec.monitoring.performance, spec.serving.rollout, spec.partitions.cadence
    windows = [("monitoring.performance.rollback_window", performance.rollback_window)]
    if rollout.mode != "none":
        windows.append(("serving.rollout.trial_days", timedelta(days=rollout.trial_days)))
    field, window = max(windows, key=lambda named: named[1])
    span = _PARTITION_SPAN[cadence]
    return span + performance.label_delay + window, (
        f"one {cadence} partition ({_duration(span)}) + monitoring.performance.label_delay "
        f"({_duration(performance.label_delay)}) + {field} ({_duration(window)})"
    )


def prediction_log(spec: ModelSpec) -> list[Problem]:
    """The log keeps rows as long as monitoring reads them, and hashes only features: the key joins delayed
    labels and the timestamp places each row on its day, so neither may be redacted."""
    found: list[Problem] = []
    policy = spec.serving.log
    needed, why = log_lookback(spec)
    if policy.retention < needed:
        found.append(
            (
                "serving.log.retention",
                _duration(policy.retention),
                f"at least {_duration(needed)}: monitoring reads the prediction log that far back ({why}); "
                f"set serving.log.retention: {_duration(needed)} or more",
            )
        )
    names = spec.features.names
    roles = {
        spec.timestamp: ("timestamp", "the log places each row on its day by it"),
        spec.key: ("key", "live performance joins the delayed labels on it"),
    }
    for i, name in enumerate(policy.redact):
        if name in roles:
            role, use = roles[name]
            found.append(
                (
                    f"serving.log.redact[{i}]",
                    name,
                    f"a feature, not the spec's {role} ({use}, which a hash would break); remove it from "
                    "serving.log.redact",
                )
            )
        elif name not in names:
            hint = difflib.get_close_matches(name, names, n=1)
            found.append(
                (
                    f"serving.log.redact[{i}]",
                    name,
                    "a feature of the spec"
                    + (f" (did you mean {hint[0]!r}?)" if hint else "")
                    + f": {', '.join(names)}",
                )
            )
    return found


def _duration(value: timedelta) -> str:
    """A duration as the spec writes it: '5d', '36h', '90m' (rounded up to the minute)."""
    minutes = -(-int(value.total_seconds()) // 60)
    for unit, size in (("d", 1440), ("h", 60)):
        if minutes % size == 0:
            return f"{minutes // size}{unit}"
    return f"{minutes}m"


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
        found.append(
            (
                "training.window_days",
                window,
                "a whole number of weeks (a multiple of 7) when training.cadence is weekly",
            )
        )
    if spec.training.validation_days + spec.training.test_days >= window:
        found.append(("training.window_days", window, "more days than training.validation_days + training.test_days"))
    if spec.training.engine == "dask" and spec.training.tuning.trials:
        found.append(
            (
                "training.tuning.trials",
                spec.training.tuning.trials,
                "0 when training.engine is dask (tuning trains every trial in one process; tune with "
                "engine: local on a shorter window, then copy the parameters into training.params)",
            )
        )
    if spec.training.engine == "dask":
        found.extend(_empty_leaves_allowed(spec.training.params))
    return found


# LightGBM's names for the fewest rows in a leaf.
_MIN_DATA_IN_LEAF = ("min_data_in_leaf", "min_data_per_leaf", "min_data", "min_child_samples", "min_samples_leaf")


def _empty_leaves_allowed(params: dict[str, Any]) -> list[Problem]:
    """On Dask, LightGBM's data-parallel learner knows a leaf's rows only as estimated from its hessian sum, and
    stops (`Check failed: left_count > 0`) on a split whose side it estimates empty, which a limit under 1
    allows."""
    return [
        (
            f"training.params.{name}",
            value,
            "at least 1 when training.engine is dask (LightGBM's data-parallel training estimates a leaf's rows "
            "and fails on a leaf it estimates empty; 20 is LightGBM's default)",
        )
        for name, value in params.items()
        if name in _MIN_DATA_IN_LEAF and isinstance(value, int | float) and not isinstance(value, bool) and value < 1
    ]


# Data cadences the training layer maps onto: a retraining partition's window is whole days (whole weeks for
# weekly retraining), so each data partition must fall inside one window, never across its bounds.
_TRAINING_CADENCES = {"hourly": ("daily", "weekly"), "daily": ("daily", "weekly"), "weekly": ("weekly",)}


def cadences(spec: ModelSpec) -> list[Problem]:
    """Data partitions the retraining windows can be cut from: hourly and daily data with daily or weekly
    retraining, weekly data with weekly retraining; monthly data with neither."""
    data, retraining = spec.partitions.cadence, spec.training.cadence
    if data == "monthly":
        return [
            (
                "partitions.cadence",
                data,
                "'hourly', 'daily' or 'weekly' for a model that trains: training windows are whole days "
                f"(training.window_days: {spec.training.window_days}) ending with each {retraining} retraining "
                "partition, and a month cannot be cut at those bounds (set partitions.cadence: daily; a window "
                "of about a month is training.window_days: 28)",
            )
        ]
    if retraining not in _TRAINING_CADENCES[data]:
        return [
            (
                "training.cadence",
                retraining,
                f"{' or '.join(repr(c) for c in _TRAINING_CADENCES[data])} when partitions.cadence is {data!r}: "
                f"a {retraining} retraining partition would take the whole {data} data partition around its day, "
                f"days after it included (set training.cadence: weekly, or partitions.cadence: daily)",
            )
        ]
    return []


def data_range(spec: ModelSpec) -> tuple[date | None, date | None, str]:
    """The first day and the end (excluded) of the data partitions as far as the spec alone knows them, and
    where they come from. A replay whose offset is not pinned in the spec has unknown dates."""
    start, end = spec.partitions.start, spec.partitions.end
    start_from, end_from = "partitions.start", "partitions.end, excluded"
    if isinstance(spec.source, nycflights13.Nycflights13Source) and spec.source.offset_weeks is not None:
        offset = timedelta(weeks=spec.source.offset_weeks)
        replay = f"the nycflights13 replay's {{}} day (source.offset_weeks: {spec.source.offset_weeks})"
        if start is None:
            start, start_from = nycflights13.SOURCE_FIRST_DAY + offset, replay.format("first")
        if end is None:
            end, end_from = nycflights13.SOURCE_LAST_DAY + offset + timedelta(days=1), replay.format("last")
    return start, end, f"{start_from} → {end_from}"


def training_range(spec: ModelSpec) -> list[Problem]:
    """The data range holds at least one whole training window: the first retraining partition ends with the
    window's last day (day `window_days` of the range), which must come before partitions.end. Otherwise
    Dagster shows a retraining partition that cannot load its features (DagsterUnknownPartitionError when it
    runs), or none at all."""
    window, retraining = spec.training.window_days, spec.training.cadence
    start, end, origin = data_range(spec)
    if (
        isinstance(spec.source, nycflights13.Nycflights13Source)
        and not spec.partitions.start
        and not spec.partitions.end
        and start is None
    ):
        days = (nycflights13.SOURCE_LAST_DAY - nycflights13.SOURCE_FIRST_DAY).days + 1
        where = f"the {days} days of the nycflights13 replay"
    elif start and end:
        days = (end - start).days
        where = f"the {days} days from {start} to {end - timedelta(days=1)} ({origin})"
    else:
        return []  # the dates come from a replay pinned at first use: training_partitions checks them then
    if days <= 0 or window <= days:
        return []  # an empty range is partitions' problem
    period = 7 if retraining == "weekly" else 1
    longest = days // period * period
    if start and end:  # start without end happens only in the replay branch above, where start is None
        last = start + timedelta(days=window - 1)
        first = (
            f"the first {retraining} retraining partition ({last - timedelta(days=period - 1)}"
            f"{f' → {last}' if period > 1 else ''}) ends {(last - end).days + 1} day(s) after the data"
        )
    else:
        first = f"the first {retraining} retraining partition would end on day {window} of the data"
    fixes = []
    if start and end:
        fixes.append(f"partitions.end to {start + timedelta(days=window)} or later")
    if spec.partitions.start and end:
        fixes.append(f"partitions.start to {end - timedelta(days=window)} or earlier")
    if longest > spec.training.validation_days + spec.training.test_days:
        fixes.append(f"training.window_days to {longest} or less")
    return [
        (
            "training.window_days",
            window,
            f"at most {where}: {first}, so no model could ever train; set "
            + (", or ".join(fixes) if fixes else "a longer partition range"),
        )
    ]
