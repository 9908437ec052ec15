"""CSV or Parquet files, local or any fsspec URL: one file per partition, or one file/glob filtered by time."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from ml_platform.core.sources.base import DataSource, SourceConfig, SourceError

if TYPE_CHECKING:
    import pandas as pd


class FilesSource(SourceConfig):
    """CSV or Parquet files: one per partition (`{date}` in the path) or one file/glob filtered by time."""

    kind: Literal["files"]
    path: str
    format: Literal["csv", "parquet"] | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        return "parquet" if self.path.rstrip("*").endswith((".parquet", ".pq")) else "csv"

    def bind(self, model_name: str, timestamp: str, pin_dir: Path) -> DataSource:
        return DataSource(
            self.kind,
            timestamp,
            lambda s, e: load(self.path, self.file_format, self.storage_options, timestamp, s, e),
            {"path": self.path},
        )


def _read(url: str, file_format: str, storage_options: dict[str, Any]) -> pd.DataFrame:
    import fsspec
    import pandas as pd

    with fsspec.open(url, "rb", **storage_options) as handle:
        return pd.read_parquet(handle) if file_format == "parquet" else pd.read_csv(handle)


def _days(start: datetime, end: datetime) -> list[str]:
    first, days = start.date(), []
    while datetime.combine(first, datetime.min.time()) < end:
        days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def paths_for(path: str, start: datetime, end: datetime, storage_options: dict[str, Any]) -> list[str]:
    """The files that hold [start, end): one per day for a `{date}` template, else the glob's matches."""
    import fsspec

    if "{date}" in path:
        return [path.format(date=day) for day in _days(start, end)]
    fs, _, paths = fsspec.get_fs_token_paths(path, storage_options=storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return [p if protocol in ("file", "local") else f"{protocol}://{p}" for p in sorted(paths)]


def load(
    path: str, file_format: str, storage_options: dict[str, Any], timestamp: str, start: datetime, end: datetime
) -> pd.DataFrame:
    """Rows of the files whose timestamp lies in [start, end); a missing file is an error, not an empty day."""
    import pandas as pd

    urls = paths_for(path, start, end, storage_options)
    if not urls:
        raise SourceError(f"no file matches {path!r}")
    frames = []
    for url in urls:
        try:
            frames.append(_read(url, file_format, storage_options))
        except FileNotFoundError:
            raise SourceError(f"source file not found: {url}") from None
        except Exception as error:  # a parse error names the file it came from
            raise SourceError(f"cannot read {url} as {file_format}: {error}") from error
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if timestamp not in frame.columns:
        raise SourceError(
            f"the timestamp column {timestamp!r} is not in {path!r}; columns: {', '.join(map(str, frame.columns))}"
        )
    return frame
