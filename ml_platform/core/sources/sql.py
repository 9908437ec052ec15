"""Any database SQLAlchemy reaches: a query with :start and :end bind parameters."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache

import pandas as pd
import sqlalchemy as sa

from ml_platform.core.sources.errors import SourceError


@lru_cache(maxsize=8)
def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url, pool_pre_ping=True)


def load(url: str, query: str, start: datetime, end: datetime) -> pd.DataFrame:
    """The query's rows for [start, end); database errors become a SourceError that says what failed."""
    try:
        with _engine(url).connect() as connection:
            return pd.read_sql_query(sa.text(query), connection, params={"start": start, "end": end})
    except sa.exc.SQLAlchemyError as error:
        detail = str(getattr(error, "orig", None) or error).strip().splitlines()[0]
        raise SourceError(f"the SQL query failed: {detail}") from error
