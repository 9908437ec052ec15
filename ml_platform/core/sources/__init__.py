"""Data sources: each turns a time interval into a DataFrame of raw rows.

Each source module holds its spec config (the `source:` section), its loader and how it binds itself to a
`DataSource`; the caller only ever asks the bound source for [start, end). A new source is its own module
plus one entry in `Source`. Nothing here imports `ml_platform.spec`: the spec imports the sources.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, get_args

from pydantic import Field

from ml_platform.core.sources.base import DataSource, SourceConfig, SourceError
from ml_platform.core.sources.files import FilesSource
from ml_platform.core.sources.nycflights13 import Nycflights13Source
from ml_platform.core.sources.sql import SqlSource

if TYPE_CHECKING:
    from ml_platform.spec import ModelSpec

__all__ = [
    "SOURCE_KINDS",
    "DataSource",
    "FilesSource",
    "Nycflights13Source",
    "Source",
    "SourceConfig",
    "SourceError",
    "SqlSource",
    "known_columns",
    "open_source",
    "text_columns",
]

#: The `source:` section of a spec, chosen by its `kind`: the one place a new source is added.
Source = Annotated[Nycflights13Source | FilesSource | SqlSource, Field(discriminator="kind")]

#: Each kind and its config, read off `Source` (error messages list them and look up their fields).
SOURCE_KINDS: dict[str, type[SourceConfig]] = {
    get_args(config.model_fields["kind"].annotation)[0]: config for config in get_args(get_args(Source)[0])
}


def known_columns(source: SourceConfig) -> list[str] | None:
    """A source's columns when known without reading data (for spec checks), else None."""
    return source.known_columns()


def text_columns(source: SourceConfig) -> list[str] | None:
    """A source's text columns when known without reading data (for spec checks), else None."""
    return source.text_columns()


def open_source(spec: ModelSpec, pin_dir: Path) -> DataSource:
    """Bind the spec's source; `pin_dir` keeps pinned replay offsets."""
    return spec.source.bind(spec.name, spec.timestamp, pin_dir)
