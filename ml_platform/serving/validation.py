"""Request validation against the model's own schema: every problem named by its field, never a 500.

Accepted shapes: `{"instances": [{feature: value, ...}, ...]}` and MLflow's
`{"dataframe_split": {"columns": [...], "data": [[...], ...]}}`.

The body is whatever `orjson.loads` returns, so anything may sit anywhere (containers nested 1024 deep,
megabyte strings, odd keys). Nothing here recurses into a value or echoes one whole: an error quotes at
most a short preview, and a request with thousands of faults is answered with the first `MAX_ERRORS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal, NamedTuple, NotRequired, TypedDict, TypeVarTuple

from ml_platform.core.model import Model

MAX_ERRORS = 50  # errors described in one answer; the rest are only counted
MAX_STRING_CHARS = 1000  # longest categorical value accepted
PREVIEW_CHARS = 64  # longest piece of a user's value or key quoted back in an error
UNKNOWN_MODES = ("ignore", "reject")

Row = dict[str, Any]  # one request row: field name -> whatever JSON value the client sent
_Args = TypeVarTuple("_Args")


class ErrorItem(TypedDict):
    """One problem of a request, by the field at fault (`instances[3].distance`)."""

    field: str
    error: str


class ErrorsBody(TypedDict):
    """The errors part of a refusal: the first MAX_ERRORS problems, how many there were, and a note when cut."""

    errors: list[ErrorItem]
    errors_total: int
    note: NotRequired[str]


class FeatureDescription(TypedDict):
    name: str
    type: Literal["number", "string"]
    nullable: bool


class RequestError(Exception):
    """A bad request: an HTTP status, the fields at fault (at most MAX_ERRORS), and how many were found."""

    def __init__(self, status: int, errors: list[ErrorItem], total: int | None = None):
        self.status = status
        self.errors = errors[:MAX_ERRORS]
        self.total = max(len(errors), total or 0)
        super().__init__(self.errors)

    @property
    def truncated(self) -> bool:
        return self.total > len(self.errors)

    def body(self) -> ErrorsBody:
        """The errors part of the answer, saying so when more were found than are listed."""
        body: ErrorsBody = {"errors": self.errors, "errors_total": self.total}
        if self.truncated:
            body["note"] = f"showing the first {len(self.errors)} of {self.total} errors"
        return body


class _Errors:
    """Counts every problem but describes only the first MAX_ERRORS: a hostile batch stays cheap."""

    __slots__ = ("items", "total")

    def __init__(self) -> None:
        self.items: list[ErrorItem] = []
        self.total = 0

    def add(self, describe: Callable[[*_Args], ErrorItem], *args: *_Args) -> None:
        """Count one problem; `describe(*args)` builds its entry, and runs only while under the cap."""
        self.total += 1
        if self.total <= MAX_ERRORS:
            self.items.append(describe(*args))

    def raise_any(self, status: int = 422) -> None:
        if self.total:
            raise RequestError(status, self.items, total=self.total)


def _error(field: str, error: str) -> ErrorItem:
    return {"field": field, "error": error}


def _fail(status: int, field: str, error: str) -> RequestError:
    return RequestError(status, [_error(field, error)])


def preview(text: str) -> str:
    """A user's string as an error may quote it: non-printables escaped, cut after PREVIEW_CHARS output
    characters with "…" and the full length, so an echo can neither flood a response nor a terminal."""
    if len(text) <= PREVIEW_CHARS and text.isprintable():
        return text
    shown: list[str] = []
    width = 0
    for char in text:
        piece = char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        if width + len(piece) > PREVIEW_CHARS:
            return "".join(shown) + f"… ({len(text)} chars)"
        shown.append(piece)
        width += len(piece)
    return "".join(shown)


def _shown(value: object) -> str:
    """A value as an error names it: scalars as a bounded preview, containers by kind only (a repr of a
    deeply nested list is both huge and a RecursionError)."""
    if value is None or isinstance(value, bool):
        return "null" if value is None else "true" if value else "false"
    if isinstance(value, str):
        return f'"{preview(value)}"'
    if isinstance(value, int):
        return preview(str(value)) if value.bit_length() < 200 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "a list"
    return "an object" if isinstance(value, dict) else f"a {type(value).__name__}"


@dataclass(frozen=True)
class Schema:
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    nullable: frozenset[str]

    @classmethod
    def of(cls, model: Model) -> Schema:
        """The request schema of a model: its features, their types, and which may be null (manifest)."""
        encoder, nullable = model.encoder, model.manifest.get("nullable")
        names = encoder.names
        return cls(
            tuple(encoder.numeric),
            tuple(encoder.categorical),
            frozenset(names if nullable is None else [n for n in names if nullable.get(n, True)]),
        )

    def describe(self) -> list[FeatureDescription]:
        numbers: list[FeatureDescription] = [
            {"name": n, "type": "number", "nullable": n in self.nullable} for n in self.numeric
        ]
        strings: list[FeatureDescription] = [
            {"name": n, "type": "string", "nullable": n in self.nullable} for n in self.categorical
        ]
        return numbers + strings

    @cached_property
    def features(self) -> frozenset[str]:
        return frozenset(self.numeric) | frozenset(self.categorical)


# --- the shape of the body -------------------------------------------------------------------------------


class Instances(NamedTuple):
    """A v1 request body as `instances_of` reads it: its rows, and whether explanations were asked for."""

    rows: list[Row]
    explain: bool


def instances_of(body: object, max_rows: int) -> Instances:
    """The rows of a request body (each a dict with str keys), and whether explanations were asked for."""
    if not isinstance(body, dict):
        raise _fail(400, "body", "expected a JSON object with 'instances' or 'dataframe_split', got " + _shown(body))
    explain = body.get("explain", False)
    if not isinstance(explain, bool):
        raise _fail(422, "explain", f"expected true or false, got {_shown(explain)}")
    if "instances" in body:
        rows = _instances(body["instances"], max_rows)
    elif "dataframe_split" in body:
        rows = _split_rows(body["dataframe_split"], max_rows)
    else:
        raise _fail(422, "instances", "missing: send 'instances' or 'dataframe_split'")
    if not rows:
        raise _fail(422, "instances", "no rows to score")
    return Instances(rows, explain)


def _instances(rows: object, max_rows: int) -> list[Row]:
    """`instances`: a list of at most max_rows objects; every element that is not one is named."""
    if not isinstance(rows, list):
        raise _fail(422, "instances", f"expected a list of objects, got {_shown(rows)}")
    if len(rows) > max_rows:
        raise _fail(413, "instances", f"{len(rows)} rows; at most {max_rows} per request")
    errors = _Errors()
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            errors.add(_not_an_object, "instances", i, row)
    errors.raise_any()
    return rows


def _not_an_object(field: str, i: int, row: object) -> ErrorItem:
    return _error(f"{field}[{i}]", f"expected an object of features, got {_shown(row)}")


def _split_rows(split: object, max_rows: int) -> list[Row]:
    """MLflow's `dataframe_split` as rows: distinct string columns, and every data row one value per column."""
    if (
        not isinstance(split, dict)
        or not isinstance(split.get("columns"), list)
        or not isinstance(split.get("data"), list)
    ):
        raise _fail(422, "dataframe_split", "expected {'columns': [...], 'data': [[...], ...]}")
    columns, data = split["columns"], split["data"]
    if len(data) > max_rows:
        raise _fail(413, "dataframe_split.data", f"{len(data)} rows; at most {max_rows} per request")
    errors, first = _Errors(), dict[str, int]()
    for i, name in enumerate(columns):
        if not isinstance(name, str):
            errors.add(_error, f"dataframe_split.columns[{i}]", f"expected a column name, got {_shown(name)}")
        elif name in first:
            errors.add(_duplicate_column, i, name, first[name])
        else:
            first[name] = i
    for i, values in enumerate(data):
        if not isinstance(values, list) or len(values) != len(columns):
            errors.add(_ragged, i, values, len(columns))
    errors.raise_any()
    return [dict(zip(columns, values, strict=True)) for values in data]


def _duplicate_column(i: int, name: str, first: int) -> ErrorItem:
    return _error(f"dataframe_split.columns[{i}]", f'duplicate column "{preview(name)}" (also columns[{first}])')


def _ragged(i: int, values: object, width: int) -> ErrorItem:
    got = f"{len(values)} values" if isinstance(values, list) else _shown(values)
    return _error(f"dataframe_split.data[{i}]", f"expected a list of {width} values, got {got}")


# --- the rows against the schema -------------------------------------------------------------------------


def validate_rows(
    rows: list[Row],
    schema: Schema,
    field: str = "instances",
    unknown: str = "ignore",
    allowed: frozenset[str] = frozenset(),
) -> None:
    """Raise RequestError(422) counting every missing feature, wrong type, disallowed null, oversized or NUL
    string and (with unknown="reject") every key that is neither a feature nor in `allowed`; the first
    MAX_ERRORS are described. Valid rows take only the inline type checks: this runs on every request."""
    if unknown not in UNKNOWN_MODES:
        raise ValueError(f"unknown={unknown!r}: expected one of {UNKNOWN_MODES}")
    known = schema.features | allowed if unknown == "reject" else None
    extras = allowed - schema.features  # kept in the log beside the features (event time, key): scalars only
    numeric, categorical, nullable = schema.numeric, schema.categorical, schema.nullable
    errors: _Errors | None = None
    for i, row in enumerate(rows):
        if row.__class__ is not dict and not isinstance(row, dict):  # instances_of sorts these out first
            errors = errors or _Errors()
            errors.add(_not_an_object, field, i, row)
            continue
        for name in numeric:
            value = row.get(name, _MISSING)
            kind = value.__class__
            if (
                (kind is float and math.isfinite(value))
                or kind is int
                or (value is None and name in nullable)
                or _fits(value, "number")
            ):
                continue
            errors = errors or _Errors()
            errors.add(_feature_error, field, i, name, value, "number")
        for name in categorical:
            value = row.get(name, _MISSING)
            kind = value.__class__
            if (
                (kind is str and len(value) <= MAX_STRING_CHARS and "\0" not in value)
                or kind is int
                or (value is None and name in nullable)
                or _fits(value, "string")
            ):
                continue
            errors = errors or _Errors()
            errors.add(_feature_error, field, i, name, value, "string")
        for name in extras:
            value = row.get(name)
            if (
                value is None
                or (value.__class__ is str and len(value) <= MAX_STRING_CHARS and "\0" not in value)
                or _fits(value, "number")
            ):
                continue
            errors = errors or _Errors()
            errors.add(_extra_error, field, i, name, value)
        if known is not None and not known.issuperset(row):
            errors = errors or _Errors()
            for key in row:
                if key not in known:
                    errors.add(_unknown_field, field, i, key)
    if errors is not None:
        errors.raise_any()


_MISSING = object()


def _fits(value: object, kind: str) -> bool:
    """The full rule behind validate_rows' inline checks, for what they leave over (subclasses of the JSON
    types; from orjson, only values that are refused): bool is never a number, null is decided by the schema."""
    if value is None or value is _MISSING or isinstance(value, bool):
        return False
    if kind == "number":
        return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))
    if isinstance(value, str):
        return len(value) <= MAX_STRING_CHARS and "\0" not in value
    return isinstance(value, int)


def _extra_error(field: str, i: int, name: str, value: object) -> ErrorItem:
    problem = (
        _feature_problem(value, "string")
        if isinstance(value, str)
        else f"expected a string or a number, got {_shown(value)}"
    )
    return _error(f"{field}[{i}].{name}", problem)


def _feature_error(field: str, i: int, name: str, value: object, kind: str) -> ErrorItem:
    return _error(f"{field}[{i}].{name}", _feature_problem(value, kind))


def _feature_problem(value: object, kind: str) -> str:
    """Why a feature's value was refused (the inline checks in validate_rows decided that it was)."""
    if value is _MISSING:
        return "missing required feature"
    if value is None:
        return "null is not allowed"
    if kind == "number":
        if isinstance(value, float) and not math.isfinite(value):
            return "expected a finite number"
        return f"expected a number, got {_shown(value)}"
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            return f"too long: {len(value)} characters, at most {MAX_STRING_CHARS}"
        return "contains a NUL character (\\u0000)"
    return f"expected a string, got {_shown(value)}"


def _unknown_field(field: str, i: int, key: str) -> ErrorItem:
    return _error(f"{field}[{i}].{preview(key)}", "unknown field; expected one of the model's features")
