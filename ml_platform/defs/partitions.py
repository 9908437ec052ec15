"""Time partitions from the spec: cadence, start (for a replay, its first day) and end."""

from __future__ import annotations

from datetime import date, timedelta

import dagster as dg

from ml_platform.core.sources import DataSource
from ml_platform.spec import ModelSpec

_DEFINITIONS = {
    "hourly": dg.HourlyPartitionsDefinition,
    "daily": dg.DailyPartitionsDefinition,
    "weekly": dg.WeeklyPartitionsDefinition,
    "monthly": dg.MonthlyPartitionsDefinition,
}
_FORMATS = {"hourly": "%Y-%m-%d-%H:%M"}


def data_partitions(spec: ModelSpec, source: DataSource) -> dg.TimeWindowPartitionsDefinition:
    """The partitions of `raw` and `features`; a replay bounds them to the days it covers."""
    replay = source.details.get("replay")
    start: date = spec.partitions.start or replay.first_day
    end: date | None = spec.partitions.end or (replay.last_day + timedelta(days=1) if replay else None)
    cadence = spec.partitions.cadence
    kwargs = {"start_date": start.isoformat()}
    if end is not None:
        kwargs["end_date"] = end.isoformat()
    if cadence == "weekly":
        kwargs["day_offset"] = start.isoweekday() % 7  # weeks begin on the start's weekday
    if cadence in _FORMATS:
        kwargs["start_date"] = f"{start.isoformat()}-00:00"
        if end is not None:
            kwargs["end_date"] = f"{end.isoformat()}-00:00"
    return _DEFINITIONS[cadence](**kwargs)
