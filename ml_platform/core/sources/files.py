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

    kind: Literal["files"] = Field(description="files: CSV or Parquet files, local or any fsspec URL.")
    path: str = Field(
        description="One file per partition (`{date}` in the path), or a file or glob filtered on `timestamp`."
    )
    format: Literal["csv", "parquet"] | None = Field(
        default=None, description="csv or parquet; default: from the path's extension."
    )
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="Passed to fsspec (credentials, endpoint)."
    )

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

    def sample(self, rows: int) -> tuple[pd.DataFrame, str]:
        """The first `rows` rows of the newest file: the last in name order (ISO dates sort by time) among the
        files a `{date}` template or the glob matches."""
        urls = matches(self.path.replace("{date}", "*"), self.storage_options)
        if not urls:
            raise SourceError(f"no file matches {self.path!r}")
        return _read(urls[-1], self.file_format, self.storage_options, rows), urls[-1]


def _read(url: str, file_format: str, storage_options: dict[str, Any], rows: int | None = None) -> pd.DataFrame:
    """One file, all of it or its first `rows` rows; a missing or unreadable file is a SourceError naming it."""
    try:
        return _parsed(url, file_format, storage_options, rows)
    except FileNotFoundError:
        raise SourceError(f"source file not found: {url}") from None
    except Exception as error:  # a parse error names the file it came from
        raise SourceError(f"cannot read {url} as {file_format}: {error}") from error


def _parsed(url: str, file_format: str, storage_options: dict[str, Any], rows: int | None) -> pd.DataFrame:
    import fsspec
    import pandas as pd

    with fsspec.open(url, "rb", **storage_options) as handle:
        if file_format != "parquet":
            return pd.read_csv(handle, nrows=rows)
        if rows is None:
            return pd.read_parquet(handle)
        import pyarrow as pa
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(handle)
        first = next(parquet.iter_batches(batch_size=rows), None)
        batches = [first] if first is not None else []
        frame: pd.DataFrame = pa.Table.from_batches(batches, schema=parquet.schema_arrow).to_pandas()
        return frame


def _days(start: datetime, end: datetime) -> list[str]:
    first, days = start.date(), []
    while datetime.combine(first, datetime.min.time()) < end:
        days.append(first.isoformat())
        first += timedelta(days=1)
    return days


def paths_for(path: str, start: datetime, end: datetime, storage_options: dict[str, Any]) -> list[str]:
    """The files that hold [start, end): one per day for a `{date}` template, else the glob's matches."""
    if "{date}" in path:
        return [path.format(date=day) for day in _days(start, end)]
    return matches(path, storage_options)


def matches(path: str, storage_options: dict[str, Any]) -> list[str]:
    """The files a path or glob matches, in name order, as URLs `_read` opens."""
    import fsspec

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
    frames = [_read(url, file_format, storage_options) for url in urls]
    frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if timestamp not in frame.columns:
        raise SourceError(
            f"the timestamp column {timestamp!r} is not in {path!r}; columns: {', '.join(map(str, frame.columns))}"
        )
    return frame
