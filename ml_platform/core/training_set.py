"""A training set: the window of feature rows of one retraining partition, split by time into train /
validation / test, with what a user checks first about it (rows and target balance per split, the data
version of every partition). Stored with each row's split in the SPLIT column."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pandas as pd

from ml_platform.core.data_versions import versions_by_partition
from ml_platform.core.training import Split, TrainingError, split_by_time
from ml_platform.spec import ModelSpec

SPLIT = "__split__"  # the column of a stored training set that says which split a row belongs to
_PARTS = ("train", "valid", "test")


@dataclass
class TrainingSet:
    """A window of feature rows split by time, with what a user checks first about it."""

    frame: Any  # every row, with its split in the SPLIT column (a Dask DataFrame on Dask)
    summary: dict[str, dict[str, Any]]  # rows, first and last day (and target balance) per split
    versions: dict[str, str]  # content hash of each data partition of features in the window

    def metadata(self) -> dict[str, Any]:
        return {
            "rows": sum(v["rows"] for v in self.summary.values()),
            **{f"rows_{k}": v["rows"] for k, v in self.summary.items()},
            "window": f"{min(self.versions)} → {max(self.versions)}" if self.versions else "empty",
            "splits": self.summary,
            "upstream_data_versions": self.versions,
            "upstream_partitions": len(self.versions),
        }


def build_training_set(
    features: pd.DataFrame, spec: ModelSpec, partitions: Sequence[str] | Mapping[str, tuple[datetime, datetime]]
) -> TrainingSet:
    """The window's rows split into train / validation / test; every data partition of the window must have rows.

    `partitions` are the window's data partitions: each key with its time window [start, end) in naive UTC
    (hourly, daily or weekly partitions alike), or ISO days for daily partitions. Coverage and data versions
    are per partition, by event time.
    """
    windows = windows_of(partitions)
    versions = versions_by_partition(features, spec.timestamp, windows)
    check_coverage(spec, windows, versions)
    split = split_by_time(features, spec)
    frame = pd.concat([getattr(split, part).assign(**{SPLIT: part}) for part in _PARTS], ignore_index=True)
    summary = split.summary(spec.timestamp, spec.target.name, spec.task, spec.target.positive)
    return TrainingSet(frame, summary, versions)


def check_coverage(
    spec: ModelSpec, windows: Mapping[str, tuple[datetime, datetime]], versions: Mapping[str, str]
) -> None:
    """Every data partition of the window must have rows (a version); the error lists those that do not."""
    keys = list(windows)
    missing = [key for key in keys if key not in versions]
    if missing:
        unit = _UNITS.get(max(end - start for start, end in windows.values()), "partitions")
        raise TrainingError(
            f"training.window_days: the {spec.training.window_days}-day window {keys[0]} → "
            f"{keys[-1]} has features for {len(keys) - len(missing)} of {len(keys)} {unit}; "
            f"missing: {', '.join(missing[:7])}{' …' if len(missing) > 7 else ''}. Materialize {spec.name}/features "
            f"for them (or shorten training.window_days in {spec.path})."
        )


_UNITS = {timedelta(hours=1): "hours", timedelta(days=1): "days", timedelta(days=7): "weeks"}


def windows_of(
    partitions: Sequence[str] | Mapping[str, tuple[datetime, datetime]],
) -> dict[str, tuple[datetime, datetime]]:
    """Each partition key with its time window, oldest first; ISO days stand for daily partitions."""
    if isinstance(partitions, Mapping):
        return dict(sorted(partitions.items(), key=lambda item: item[1][0]))
    days = {day: datetime.fromisoformat(day) for day in partitions}
    return {day: (start, start + timedelta(days=1)) for day, start in sorted(days.items(), key=lambda i: i[1])}


def split_of(training_set: pd.DataFrame) -> Split:
    """The stored training set back into its three splits (without the SPLIT column)."""
    return Split(
        *(training_set[training_set[SPLIT] == part].drop(columns=SPLIT).reset_index(drop=True) for part in _PARTS)
    )
