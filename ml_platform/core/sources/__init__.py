"""Data sources: each turns a time interval into a DataFrame of raw rows.

`open_source` binds a spec's source section to what it needs (a pinned replay, a URL) and returns a
`DataSource`; the caller only ever asks it for [start, end).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable

import pandas as pd

from ml_platform.core.sources import files, nycflights13, sql
from ml_platform.core.sources.errors import SourceError
from ml_platform.spec import FilesSource, ModelSpec, Nycflights13Source, SqlSource

__all__ = ["DataSource", "SourceError", "known_columns", "open_source"]


@dataclass(frozen=True)
class DataSource:
    """A bound source: `load(start, end)` returns the rows whose timestamp lies in [start, end)."""

    kind: str
    timestamp: str
    loader: Callable[[datetime, datetime], pd.DataFrame]
    details: dict = field(default_factory=dict)

    def load(self, start: datetime, end: datetime) -> pd.DataFrame:
        frame = self.loader(start, end)
        if self.timestamp not in frame.columns:
            raise SourceError(f"the source returned no timestamp column {self.timestamp!r}; "
                              f"columns: {', '.join(map(str, frame.columns))}")
        stamps = frame[self.timestamp]
        if not pd.api.types.is_datetime64_any_dtype(stamps):
            try:
                stamps = pd.to_datetime(stamps, format="mixed")
            except (ValueError, TypeError) as error:
                raise SourceError(f"timestamp column {self.timestamp!r} is not a date-time: {error}") from None
        if getattr(stamps.dt, "tz", None) is not None:
            stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
        frame = frame.assign(**{self.timestamp: stamps})
        inside = (stamps >= pd.Timestamp(start)) & (stamps < pd.Timestamp(end))
        return frame.loc[inside].reset_index(drop=True)


def known_columns(source) -> list[str] | None:
    """A source's columns when known without reading data (for spec checks), else None."""
    return list(nycflights13.COLUMNS) if isinstance(source, Nycflights13Source) else None


def open_source(spec: ModelSpec, pin_dir: Path) -> DataSource:
    """Bind the spec's source; `pin_dir` keeps pinned replay offsets."""
    source = spec.source
    if isinstance(source, Nycflights13Source):
        replay = nycflights13.pinned_replay(spec.name, pin_dir, source.offset_weeks)
        return DataSource("nycflights13", spec.timestamp, lambda s, e: nycflights13.load(replay, s, e),
                          {"replay": replay})
    if isinstance(source, FilesSource):
        return DataSource("files", spec.timestamp,
                          lambda s, e: files.load(source.path, source.file_format, source.storage_options,
                                                  spec.timestamp, s, e),
                          {"path": source.path})
    if isinstance(source, SqlSource):
        return DataSource("sql", spec.timestamp, lambda s, e: sql.load(source.url, source.query, s, e),
                          {"url": _redacted(source.url)})
    raise TypeError(f"unknown source {source!r}")


def _redacted(url: str) -> str:
    """A database URL without its password, for metadata."""
    try:
        import sqlalchemy as sa

        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
