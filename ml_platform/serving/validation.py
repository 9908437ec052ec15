"""Request validation against the model's own schema: every problem named by its field, never a 500.

Accepted shapes: `{"instances": [{feature: value, ...}, ...]}` and MLflow's
`{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ml_platform.core.model import Model


class RequestError(Exception):
    """A bad request: an HTTP status and the list of fields at fault."""

    def __init__(self, status: int, errors: list[dict]):
        super().__init__(errors)
        self.status = status
        self.errors = errors


@dataclass(frozen=True)
class Schema:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    nullable: frozenset[str]

    @classmethod
    def of(cls, model: Model) -> "Schema":
        """The request schema of a model: its features, their types, and which may be null (manifest)."""
        encoder, nullable = model.encoder, model.manifest.get("nullable")
        names = encoder.names
        return cls(tuple(encoder.numeric), tuple(encoder.categorical),
                   frozenset(names if nullable is None else [n for n in names if nullable.get(n, True)]))

    def describe(self) -> list[dict]:
        return ([{"name": n, "type": "number", "nullable": n in self.nullable} for n in self.numeric]
                + [{"name": n, "type": "string", "nullable": n in self.nullable} for n in self.categorical])


def instances_of(body: object, max_rows: int) -> tuple[list[dict], bool]:
    """The rows of a request body, and whether explanations were asked for."""
    if not isinstance(body, dict):
        raise RequestError(400, [{"field": "body", "error": "expected a JSON object with 'instances' or "
                                                             "'dataframe_split'"}])
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError(422, [{"field": "explain", "error": "expected true or false"}])
    if "instances" in body:
        rows = body["instances"]
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise RequestError(422, [{"field": "instances", "error": "expected a list of objects"}])
    elif "dataframe_split" in body:
        split = body["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
                or not isinstance(split.get("data"), list):
            raise RequestError(422, [{"field": "dataframe_split",
                                      "error": "expected {'columns': [...], 'data': [[...], ...]}"}])
        columns = split["columns"]
        rows = []
        for i, values in enumerate(split["data"]):
            if not isinstance(values, list) or len(values) != len(columns):
                raise RequestError(422, [{"field": f"dataframe_split.data[{i}]",
                                          "error": f"expected a list of {len(columns)} values"}])
            rows.append(dict(zip(columns, values)))
    else:
        raise RequestError(422, [{"field": "instances", "error": "missing: send 'instances' or 'dataframe_split'"}])
    if not rows:
        raise RequestError(422, [{"field": "instances", "error": "no rows to score"}])
    if len(rows) > max_rows:
        raise RequestError(413, [{"field": "instances", "error": f"{len(rows)} rows; at most {max_rows} per request"}])
    return rows, explain


def _type_error(value, kind: str) -> str | None:
    """Why a non-null value does not fit a numeric or categorical feature, or None when it does."""
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"expected a number, got {value!r}"
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return f"expected a string, got {value!r}"
    return None


def validate_rows(rows: list[dict], schema: Schema, field: str = "instances") -> None:
    """Raise RequestError(422) listing every missing feature, wrong type and disallowed null."""
    features = [(name, "number") for name in schema.numeric] + [(name, "string") for name in schema.categorical]
    errors = []
    for i, row in enumerate(rows):
        for name, kind in features:
            where = f"{field}[{i}].{name}"
            if name not in row:
                errors.append({"field": where, "error": "missing required feature"})
            elif row[name] is None:
                if name not in schema.nullable:
                    errors.append({"field": where, "error": "null is not allowed"})
            elif (problem := _type_error(row[name], kind)) is not None:
                errors.append({"field": where, "error": problem})
        if len(errors) > 50:
            break
    if errors:
        raise RequestError(422, errors)
