"""Time partitions from the spec: the data's cadence and bounds, the retraining cadence, and the rolling
window that maps a retraining partition onto the data partitions it trains on."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.spec import ModelSpec, SpecError

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.core.sources import DataSource

_DEFINITIONS = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}
_FORMATS = {"hourly": "%Y-%m-%d-%H:%M"}


def _weekly(start: date, end: date | None) -> dg.WeeklyPartitionsDefinition:
    """Weeks that begin on the start's weekday (Dagster's weeks begin on Sunday otherwise)."""
    return dg.WeeklyPartitionsDefinition(
        start_date=start.isoformat(), day_offset=start.isoweekday() % 7, end_date=end.isoformat() if end else None
    )


def data_partitions(spec: ModelSpec, source: DataSource) -> dg.TimeWindowPartitionsDefinition:
    """The partitions of `raw` and `features`; a replay bounds them to the days it covers."""
    replay = source.replay
    start = spec.partitions.start or (replay.first_day if replay else None)
    if start is None:  # the spec's rules ask for partitions.start when the source has no calendar of its own
        raise ValueError(f"{spec.name}: partitions.start is required for a {source.kind} source")
    end: date | None = spec.partitions.end or (replay.last_day + timedelta(days=1) if replay else None)
    cadence = spec.partitions.cadence
    if cadence == "weekly":
        return _weekly(start, end)
    suffix = "-00:00" if cadence in _FORMATS else ""
    kwargs = {"start_date": f"{start.isoformat()}{suffix}"}
    if end is not None:
        kwargs["end_date"] = f"{end.isoformat()}{suffix}"
    return _DEFINITIONS[cadence](**kwargs)


def training_partitions(spec: ModelSpec, data: dg.TimeWindowPartitionsDefinition) -> dg.TimeWindowPartitionsDefinition:
    """Retraining partitions whose first window starts on the first day of data.

    The spec check refuses a window longer than the data range whenever the spec alone knows the dates; a
    replay pinned at first use is only known here, so the same refusal is raised here (Dagster would otherwise
    show a first retraining partition that ends after the data and fail it with DagsterUnknownPartitionError).
    """
    first_data_day = data.start.date()
    end = data.end.date() if data.end else None
    window = spec.training.window_days
    if end is not None and first_data_day + timedelta(days=window) > end:
        days = (end - first_data_day).days
        raise SpecError(
            f"{spec.path or spec.name}: training.window_days: found {window}; allowed: at most the "
            f"{days} days of data from {first_data_day} to {end - timedelta(days=1)} (partitions.start "
            f"or the replay's first day → partitions.end or the replay's last day): the first "
            f"{spec.training.cadence} retraining partition would end on "
            f"{first_data_day + timedelta(days=window - 1)}, after the data, so no model could ever "
            f"train; set partitions.end to {first_data_day + timedelta(days=window)} or later, or a "
            f"shorter training.window_days"
        )
    if spec.training.cadence == "weekly":
        return _weekly(first_data_day + timedelta(days=window - 7), end)
    start = first_data_day + timedelta(days=window - 1)
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_date=end.isoformat() if end else None)


def window_mapping(spec: ModelSpec) -> dg.TimeWindowPartitionMapping:
    """Training partition → the feature partitions of its window. The offset counts training periods (Dagster
    offsets are in the downstream's units), so the window is the same days whatever the data cadence: 24 hourly
    keys per day, one daily key per day, one weekly key per week (weekly data trains weekly, aligned)."""
    periods = spec.training.window_days // 7 if spec.training.cadence == "weekly" else spec.training.window_days
    return dg.TimeWindowPartitionMapping(start_offset=-(periods - 1))


def partition_windows(
    partitions_def: dg.TimeWindowPartitionsDefinition, keys: list[str]
) -> dict[str, tuple[datetime, datetime]]:
    """Each partition key with its time window [start, end) as naive UTC datetimes."""
    windows = {}
    for key in keys:
        window = partitions_def.time_window_for_partition_key(key)
        windows[key] = (window.start.replace(tzinfo=None), window.end.replace(tzinfo=None))
    return windows


def window_of(context: dg.AssetExecutionContext) -> tuple[datetime, datetime]:
    """The run's time window [start, end) as naive UTC datetimes (how sources and logs keep time)."""
    window = context.partition_time_window
    return window.start.replace(tzinfo=None), window.end.replace(tzinfo=None)


def label_of(keys: list[str]) -> str:
    """A run's partitions as users read them in messages: one key, or `first…last`."""
    return keys[0] if len(keys) == 1 else f"{keys[0]}…{keys[-1]}"


def split_by_partition(
    frame: pd.DataFrame, timestamp: str, keys: list[str], partitions_def: dg.TimeWindowPartitionsDefinition
) -> tuple[pd.Series, dict[str, pd.DataFrame]]:
    """Which partition each row falls in (by event time), and the frame split into those partitions."""
    import numpy as np
    import pandas as pd

    starts = np.array(
        [np.datetime64(partitions_def.time_window_for_partition_key(k).start.replace(tzinfo=None)) for k in keys],
        dtype="datetime64[ns]",
    )
    position = np.searchsorted(starts, frame[timestamp].to_numpy(dtype="datetime64[ns]"), side="right") - 1
    partition_of = pd.Series(np.asarray(keys, dtype=object)[np.clip(position, 0, None)], index=frame.index)
    groups = {key: part.reset_index(drop=True) for key, part in frame.groupby(partition_of, sort=False)}
    return partition_of, {key: groups.get(key, frame.iloc[0:0]) for key in keys}
