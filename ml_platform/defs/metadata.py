"""Small helpers that turn frames into Dagster metadata values the UI renders well."""

from __future__ import annotations

import dagster as dg
import pandas as pd

_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "datetime", "O": "string"}


def schema_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """The column schema (names and types), shown in the asset's overview."""
    return dg.MetadataValue.table_schema(dg.TableSchema(columns=[
        dg.TableColumn(str(name), _TYPES.get(dtype.kind, str(dtype))) for name, dtype in frame.dtypes.items()]))


def preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows as a Markdown table."""
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))
