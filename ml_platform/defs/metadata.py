"""Small helpers that turn frames into what the Dagster UI renders well: metadata values and outputs that
carry a content-hash data version per partition."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING

import dagster as dg

if TYPE_CHECKING:
    import pandas as pd

_TYPES = {"i": "int", "u": "int", "f": "float", "b": "bool", "M": "datetime", "O": "string"}


def schema_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """The column schema (names and types), shown in the asset's overview."""
    return dg.MetadataValue.table_schema(
        dg.TableSchema(
            columns=[
                dg.TableColumn(str(name), _TYPES.get(dtype.kind, str(dtype))) for name, dtype in frame.dtypes.items()
            ]
        )
    )


def preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    """The first rows as a Markdown table."""
    from ml_platform.core.model_card import markdown_table

    return dg.MetadataValue.md(markdown_table(frame.head(rows), floatfmt="g"))


def md_table(frame: pd.DataFrame) -> dg.MetadataValue:
    """A whole (small) frame as a Markdown table, or `_none_`; no cell can break the table."""
    from ml_platform.core.model_card import markdown_table

    return dg.MetadataValue.md(markdown_table(frame))


def records_table(frame: pd.DataFrame, columns: list[dg.TableColumn]) -> dg.MetadataValue:
    """A frame as a typed table; cells that are not scalars are shown as JSON."""
    return dg.MetadataValue.table(
        records=[dg.TableRecord({str(k): _cell(v) for k, v in row.items()}) for row in frame.to_dict(orient="records")],
        schema=dg.TableSchema(columns=columns),
    )


def partitioned_output(
    context: dg.AssetExecutionContext,
    parts: Mapping[str, pd.DataFrame],
    metadata: dict,
    hashes: Mapping[str, str] | None = None,
) -> dg.Output:
    """One partition: its frame with its content hash as the data version. Several (a backfill in one run):
    {key: frame}, with each partition's rows and content hash on its own materialization and the run's
    `metadata` (about the whole range) on the newest partition's only: copied onto every partition it described
    other days' rows and cost each of hundreds of events its serialization. `hashes`: the partitions' content
    hashes when the caller already has them (`content_hashes`, one pass over the range)."""
    if hashes is None:
        from ml_platform.core.data_versions import content_hash

        hashes = {key: content_hash(part) for key, part in parts.items()}
    if len(parts) == 1:
        ((key, part),) = parts.items()
        return dg.Output(
            part, metadata={**metadata, "content_hash": hashes[key]}, data_version=dg.DataVersion(hashes[key])
        )
    newest = list(parts)[-1]
    for key, part in parts.items():
        own = {"rows": len(part), "content_hash": hashes[key]}
        context.add_asset_metadata({**metadata, **own} if key == newest else own, partition_key=key)
    return dg.Output(dict(parts))


def _cell(value):
    return value if isinstance(value, (int, float, str, bool)) or value is None else json.dumps(value, default=str)
