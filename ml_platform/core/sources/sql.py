"""Any database SQLAlchemy reaches: a query with :start and :end bind parameters."""

from __future__ import annotations

import re
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ml_platform.core.sources.base import DataSource, SourceConfig, SourceError

if TYPE_CHECKING:
    import pandas as pd
    import sqlalchemy as sa


class SqlSource(SourceConfig):
    """A SQLAlchemy URL and a query with `:start` and `:end` bind parameters (half-open interval)."""

    kind: Literal["sql"] = Field(description="sql: a query against any SQLAlchemy URL.")
    url: str = Field(description="A SQLAlchemy URL, e.g. postgresql+psycopg2://user@host/db.")
    query: str = Field(
        description="A query with `:start` and `:end` bind parameters (the half-open interval of one partition)."
    )

    @field_validator("query")
    @classmethod
    def _has_binds(cls, query: str) -> str:
        missing = [p for p in (":start", ":end") if not re.search(re.escape(p) + r"\b", query)]
        if missing:
            raise ValueError(f"the query must use the bind parameters :start and :end (missing {missing})")
        return query

    def bind(self, model_name: str, timestamp: str, pin_dir: Path) -> DataSource:
        return DataSource(
            self.kind, timestamp, lambda s, e: load(self.url, self.query, s, e), {"url": redacted(self.url)}
        )

    def sample(self, rows: int) -> tuple[pd.DataFrame, str]:
        """The query's first `rows` rows over all time (the database applies the limit, in its own dialect)."""
        import sqlalchemy as sa

        limited = sa.select(sa.text("*")).select_from(sa.text(self.query).columns().subquery("sampled")).limit(rows)
        frame = _read(self.url, limited, {"start": datetime(1900, 1, 1), "end": datetime(9999, 12, 31)})
        return frame, f"the query on {redacted(self.url)}"


@lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    import sqlalchemy as sa

    return sa.create_engine(url, pool_pre_ping=True)


def load(url: str, query: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The query's rows for [start, end); database errors become a SourceError that says what failed."""
    import sqlalchemy as sa

    return _read(url, sa.text(query), {"start": start, "end": end})


def _read(url: str, statement: sa.TextClause | sa.Select[Any], params: dict[str, datetime]) -> pd.DataFrame:
    import pandas as pd
    import sqlalchemy as sa

    try:
        with _engine(url).connect() as connection:
            return pd.read_sql_query(statement, connection, params=params)
    except sa.exc.SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SourceError(f"the SQL query failed: {detail}") from error


def redacted(url: str) -> str:
    """A database URL without its password, for metadata (SQL specs only pay for importing SQLAlchemy)."""
    import sqlalchemy as sa

    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("@")[-1]
