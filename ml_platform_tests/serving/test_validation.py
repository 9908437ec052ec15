"""Request validation on hostile bodies: every malformed body is a RequestError naming its field, never another
exception, and what an error echoes back is bounded. No model: a Schema is built by hand."""

from __future__ import annotations

import random

import orjson
import pytest

from ml_platform.serving.validation import (
    MAX_ERRORS,
    MAX_STRING_CHARS,
    PREVIEW_CHARS,
    RequestError,
    Schema,
    instances_of,
    preview,
    validate_rows,
)

SCHEMA = Schema(
    numeric=("distance", "temp", "month"), categorical=("carrier", "meal"), nullable=frozenset({"temp", "meal"})
)
ROW = {"distance": 1089, "temp": 21.5, "month": 6, "carrier": "UA", "meal": "veg"}
MAX_ROWS = 1000
ORJSON_MAX_DEPTH = 1024
LONGEST_MESSAGE = 200  # every field and error text stays under this, whatever was sent


def _nested(depth: int, leaf: bytes = b"1") -> bytes:
    """`depth` lists one inside the other, as JSON text (Python could not build it without recursing)."""
    return b"[" * depth + leaf + b"]" * depth


def _nested_objects(depth: int) -> bytes:
    return b'{"x":' * depth + b"1" + b"}" * depth


def _row_json(**replaced: bytes) -> bytes:
    """ROW as JSON text with some values replaced by raw JSON (so they may nest as deep as orjson allows)."""
    parts = [orjson.dumps(k) + b":" + replaced.pop(k, orjson.dumps(v)) for k, v in ROW.items()]
    parts += [orjson.dumps(k) + b":" + v for k, v in replaced.items()]
    return b"{" + b",".join(parts) + b"}"


# A feature value at orjson's deepest: the body's object, `instances`' list and the row's object are 3 levels.
DEEP_VALUE = _nested(ORJSON_MAX_DEPTH - 3)
DEEP_ROW = b'{"instances":[' + _row_json(meal=DEEP_VALUE) + b"]}"
DEEP_NUMBER = b'{"instances":[' + _row_json(distance=_nested_objects(ORJSON_MAX_DEPTH - 3)) + b"]}"
DEEP_UNKNOWN = b'{"instances":[' + _row_json(junk=DEEP_VALUE) + b"]}"


def _outcome(body: object, unknown: str = "ignore", allowed: frozenset = frozenset()):
    """(status, fields, error) of a body run through both steps as the endpoint does; (200, [], None) when
    valid. Raw bytes are parsed with orjson first. Any exception but RequestError fails the test by escaping."""
    payload = orjson.loads(body) if isinstance(body, bytes) else body
    try:
        rows, _ = instances_of(payload, MAX_ROWS)
        assert all(isinstance(row, dict) and all(isinstance(k, str) for k in row) for row in rows)
        validate_rows(rows, SCHEMA, unknown=unknown, allowed=allowed)
    except RequestError as error:
        _assert_bounded(error)
        return error.status, [e["field"] for e in error.errors], error
    return 200, [], None


def _assert_bounded(error: RequestError) -> None:
    """What the endpoint would send back: at most MAX_ERRORS short entries, and it serializes."""
    assert 1 <= len(error.errors) <= MAX_ERRORS and error.total >= len(error.errors)
    for entry in error.errors:
        assert set(entry) == {"field", "error"}
        assert len(entry["field"]) <= LONGEST_MESSAGE and len(entry["error"]) <= LONGEST_MESSAGE, entry
    orjson.dumps(error.body())


def _split(columns, data) -> dict:
    return {"dataframe_split": {"columns": columns, "data": data}}


COLUMNS = list(ROW)
VALUES = list(ROW.values())

BAD = [
    # the body itself
    pytest.param([ROW], 400, "body", id="body is a list"),
    pytest.param("instances", 400, "body", id="body is a string"),
    pytest.param(12, 400, "body", id="body is a number"),
    pytest.param(None, 400, "body", id="body is null"),
    pytest.param(_nested(ORJSON_MAX_DEPTH - 1), 400, "body", id="body nested at orjson's maximum"),
    pytest.param({"rows": [ROW]}, 422, "instances", id="neither instances nor dataframe_split"),
    pytest.param({"instances": [ROW], "explain": "yes"}, 422, "explain", id="explain a string"),
    pytest.param({"instances": [ROW], "explain": 1}, 422, "explain", id="explain a number"),
    pytest.param({"instances": [ROW], "explain": None}, 422, "explain", id="explain null"),
    pytest.param(
        b'{"instances":[{}],"explain":' + _nested(ORJSON_MAX_DEPTH - 1) + b"}",
        422,
        "explain",
        id="explain nested at orjson's maximum",
    ),
    # instances
    pytest.param({"instances": {"a": 1}}, 422, "instances", id="instances an object"),
    pytest.param({"instances": "rows"}, 422, "instances", id="instances a string"),
    pytest.param({"instances": None}, 422, "instances", id="instances null"),
    pytest.param({"instances": []}, 422, "instances", id="no rows"),
    pytest.param({"instances": [ROW] * (MAX_ROWS + 1)}, 413, "instances", id="too many rows"),
    pytest.param({"instances": [1]}, 422, "instances[0]", id="row a number"),
    pytest.param({"instances": [ROW, [1, 2]]}, 422, "instances[1]", id="row a list"),
    pytest.param({"instances": [ROW, ROW, "UA"]}, 422, "instances[2]", id="row a string"),
    pytest.param({"instances": [ROW, None]}, 422, "instances[1]", id="row null"),
    pytest.param(
        b'{"instances":[' + _nested(ORJSON_MAX_DEPTH - 2) + b"]}",
        422,
        "instances[0]",
        id="row nested at orjson's maximum",
    ),
    pytest.param({"instances": [{}]}, 422, "instances[0].distance", id="empty row"),
    # dataframe_split
    pytest.param({"dataframe_split": [COLUMNS, [VALUES]]}, 422, "dataframe_split", id="split a list"),
    pytest.param({"dataframe_split": {"data": [VALUES]}}, 422, "dataframe_split", id="split without columns"),
    pytest.param(_split(COLUMNS, {"0": VALUES}), 422, "dataframe_split", id="split data an object"),
    pytest.param(_split(COLUMNS, []), 422, "instances", id="split without rows"),
    pytest.param(_split(COLUMNS, [VALUES] * (MAX_ROWS + 1)), 413, "dataframe_split.data", id="split too many rows"),
    pytest.param(_split(COLUMNS, [VALUES, VALUES[:2]]), 422, "dataframe_split.data[1]", id="split ragged row"),
    pytest.param(_split(COLUMNS, [[*VALUES, 1]]), 422, "dataframe_split.data[0]", id="split row too long"),
    pytest.param(_split(COLUMNS, [dict(ROW)]), 422, "dataframe_split.data[0]", id="split row an object"),
    pytest.param(_split([[1]], [[1]]), 422, "dataframe_split.columns[0]", id="split column a list"),
    pytest.param(_split([*COLUMNS[:4], None], [VALUES]), 422, "dataframe_split.columns[4]", id="split column null"),
    pytest.param(_split([7, *COLUMNS[1:]], [VALUES]), 422, "dataframe_split.columns[0]", id="split column a number"),
    pytest.param(
        _split([*COLUMNS, "month"], [[*VALUES, 7]]), 422, "dataframe_split.columns[5]", id="split duplicate column"
    ),
    pytest.param(
        b'{"dataframe_split":{"columns":[' + _nested(ORJSON_MAX_DEPTH - 3) + b'],"data":[[1]]}}',
        422,
        "dataframe_split.columns[0]",
        id="split column nested at orjson's maximum",
    ),
    # feature values
    pytest.param({"instances": [{**ROW, "distance": "far"}]}, 422, "instances[0].distance", id="string as number"),
    pytest.param({"instances": [{**ROW, "temp": True}]}, 422, "instances[0].temp", id="true as number"),
    pytest.param({"instances": [{**ROW, "month": False}]}, 422, "instances[0].month", id="false as number"),
    pytest.param({"instances": [{**ROW, "carrier": True}]}, 422, "instances[0].carrier", id="bool as category"),
    pytest.param({"instances": [{**ROW, "carrier": 1.5}]}, 422, "instances[0].carrier", id="float as category"),
    pytest.param(
        b'{"instances":[' + _row_json(carrier=b"1" + b"0" * 30) + b"]}",
        422,
        "instances[0].carrier",
        id="int past 64 bits as category (orjson: a float)",
    ),
    pytest.param({"instances": [{**ROW, "distance": [1]}]}, 422, "instances[0].distance", id="list as number"),
    pytest.param({"instances": [{**ROW, "distance": {"km": 1}}]}, 422, "instances[0].distance", id="object as number"),
    pytest.param({"instances": [{**ROW, "distance": None}]}, 422, "instances[0].distance", id="null not allowed"),
    pytest.param(
        {"instances": [{k: v for k, v in ROW.items() if k != "carrier"}]},
        422,
        "instances[0].carrier",
        id="missing feature",
    ),
    pytest.param({"instances": [ROW, {**ROW, "month": "June"}]}, 422, "instances[1].month", id="second row bad"),
    pytest.param({"instances": [{**ROW, "temp": float("nan")}]}, 422, "instances[0].temp", id="NaN (not from JSON)"),
    pytest.param({"instances": [{**ROW, "temp": float("-inf")}]}, 422, "instances[0].temp", id="inf (not from JSON)"),
    pytest.param(DEEP_ROW, 422, "instances[0].meal", id="category nested at orjson's maximum"),
    pytest.param(DEEP_NUMBER, 422, "instances[0].distance", id="number nested at orjson's maximum (objects)"),
    pytest.param(
        {"instances": [{**ROW, "meal": "x" * (MAX_STRING_CHARS + 1)}]}, 422, "instances[0].meal", id="category too long"
    ),
    pytest.param({"instances": [{**ROW, "carrier": "U\0A"}]}, 422, "instances[0].carrier", id="NUL in category"),
    pytest.param(
        {"instances": [{**ROW, "distance": "9" * 100_000}]}, 422, "instances[0].distance", id="long string as number"
    ),
]


@pytest.mark.parametrize("body, status, field", BAD)
def test_a_malformed_body_is_a_request_error_naming_its_field(body, status, field):
    got, fields, _ = _outcome(body)
    assert (got, field in fields) == (status, True), fields


GOOD = [
    pytest.param({"instances": [ROW]}, id="one row"),
    pytest.param({"instances": [ROW], "explain": True}, id="explain"),
    pytest.param({"instances": [ROW] * MAX_ROWS}, id="most rows"),
    pytest.param({"instances": [{**ROW, "temp": None, "meal": None}]}, id="nulls where allowed"),
    pytest.param({"instances": [{**ROW, "carrier": 7}]}, id="int as category"),
    pytest.param(b'{"instances":[' + _row_json(distance=b"18446744073709551615") + b"]}", id="largest int"),
    pytest.param(b'{"instances":[' + _row_json(distance=b"-" + b"9" * 40) + b"]}", id="int past 64 bits"),
    pytest.param({"instances": [{**ROW, "meal": "x" * MAX_STRING_CHARS}]}, id="category at the length limit"),
    pytest.param(_split(COLUMNS, [VALUES, VALUES]), id="dataframe_split"),
    pytest.param(DEEP_UNKNOWN, id="unknown field nested at orjson's maximum, ignored"),
]


@pytest.mark.parametrize("body", GOOD)
def test_valid_bodies_pass(body):
    assert _outcome(body)[0] == 200


UNKNOWN = [
    pytest.param({"instances": [{**ROW, "colour": "red"}]}, "ignore", frozenset(), 200, None, id="ignored"),
    pytest.param(
        {"instances": [{**ROW, "colour": "red"}]}, "reject", frozenset(), 422, "instances[0].colour", id="rejected"
    ),
    pytest.param({"instances": [{**ROW, "id": "r1"}]}, "reject", frozenset({"id"}), 200, None, id="allowed"),
    pytest.param(
        {"instances": [ROW, {**ROW, "id": 1, "x": 2}]},
        "reject",
        frozenset({"id"}),
        422,
        "instances[1].x",
        id="rejected beside an allowed one",
    ),
    pytest.param(DEEP_UNKNOWN, "reject", frozenset(), 422, "instances[0].junk", id="nested at orjson's maximum"),
    pytest.param(
        _split([*COLUMNS, "extra"], [[*VALUES, 1]]),
        "reject",
        frozenset(),
        422,
        "instances[0].extra",
        id="extra dataframe_split column",
    ),
]


@pytest.mark.parametrize("body, unknown, allowed, status, field", UNKNOWN)
def test_unknown_fields_are_ignored_or_rejected(body, unknown, allowed, status, field):
    got, fields, error = _outcome(body, unknown, allowed)
    assert got == status and (field is None or field in fields), fields
    if error is not None:
        assert error.errors[0]["error"] == "unknown field; expected one of the model's features"


def test_the_error_for_a_container_names_its_kind_not_its_contents():
    assert _outcome(DEEP_ROW)[2].errors[0]["error"] == "expected a string, got a list"
    assert _outcome(DEEP_NUMBER)[2].errors[0]["error"] == "expected a number, got an object"
    assert _outcome({"instances": [{**ROW, "temp": True}]})[2].errors[0]["error"] == "expected a number, got true"


def test_a_long_category_is_refused_with_its_length_and_the_limit():
    error = _outcome({"instances": [{**ROW, "meal": "x" * 5000}]})[2]
    assert "5000" in error.errors[0]["error"] and str(MAX_STRING_CHARS) in error.errors[0]["error"]


def test_echoed_values_and_keys_are_short_previews_with_control_characters_escaped():
    error = _outcome({"instances": [{**ROW, "distance": "far\x1b[31m" + "a" * 10_000}]})[2]
    message = error.errors[0]["error"]
    assert "\x1b" not in message and "\\x1b" in message and message.endswith('… (10008 chars)"')
    key = "k\n" * 5000
    error = _outcome({"instances": [{**ROW, key: 1}]}, unknown="reject")[2]
    field = error.errors[0]["field"]
    assert "\n" not in field and field.startswith("instances[0].k\\nk") and field.endswith("… (10000 chars)")
    assert preview("short and plain") == "short and plain"
    long = preview("é" * 1000)
    assert long == "é" * PREVIEW_CHARS + "… (1000 chars)"
    assert len(preview("\0" * 100).split("…")[0]) <= PREVIEW_CHARS


def test_a_batch_of_bad_rows_counts_every_error_and_lists_the_first_fifty():
    bad = {"distance": True, "temp": "hot", "month": None, "carrier": ["UA"], "colour": 1}  # meal: missing
    error = _outcome({"instances": [bad] * MAX_ROWS}, unknown="reject")[2]
    assert error.status == 422 and error.total == 6 * MAX_ROWS and error.truncated
    assert error.body() == {
        "errors": error.errors,
        "errors_total": 6 * MAX_ROWS,
        "note": f"showing the first {MAX_ERRORS} of {6 * MAX_ROWS} errors",
    }
    assert len(error.errors) == MAX_ERRORS and error.errors[-1]["field"].startswith("instances[8].")


def test_every_bad_row_and_column_is_counted():
    error = _outcome({"instances": [1] * 60})[2]
    assert (error.total, len(error.errors), error.errors[-1]["field"]) == (60, MAX_ERRORS, "instances[49]")
    error = _outcome(_split([None] * 30 + ["a", "a"], [[1]] * 30))[2]
    assert error.total == 31 + 30 and error.truncated


def test_request_error_body_without_truncation():
    error = RequestError(404, [{"field": "x", "error": "y"}])
    assert (error.total, error.truncated) == (1, False)
    assert error.body() == {"errors": [{"field": "x", "error": "y"}], "errors_total": 1}
    many = RequestError(422, [{"field": str(i), "error": "e"} for i in range(80)])
    assert (len(many.errors), many.total, many.truncated) == (MAX_ERRORS, 80, True)
    assert (
        RequestError(422, [{"field": "x", "error": "y"}], total=7).body()["note"] == "showing the first 1 of 7 errors"
    )


def _random_json(rng: random.Random, depth: int = 0) -> object:
    """A small random JSON value, biased toward the shapes the endpoint parses."""
    pick = rng.randrange(10 if depth < 4 else 6)
    scalars = [None, True, False, 0, -1, 2**64 - 1, 1.5, "", "UA", "\0", "x" * 2000]
    if pick < 6:
        return rng.choice(scalars)
    if pick < 8:
        return [_random_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    keys = ["instances", "dataframe_split", "columns", "data", "explain", *ROW, "junk"]
    return {rng.choice(keys): _random_json(rng, depth + 1) for _ in range(rng.randrange(5))}


@pytest.mark.parametrize("unknown", ["ignore", "reject"])
def test_random_bodies_never_raise_anything_but_a_request_error(unknown):
    rng = random.Random(7)
    for _ in range(3000):
        body = _random_json(rng)
        if isinstance(body, dict) and rng.random() < 0.5:
            body["instances"] = [
                dict(ROW, **body) if rng.random() < 0.5 else _random_json(rng, 2) for _ in range(rng.randrange(3))
            ]
        _outcome(orjson.loads(orjson.dumps(body)), unknown)


def test_the_deep_cases_are_at_orjsons_maximum_depth():
    """One level more and orjson itself refuses the body, so these are the deepest requests that can arrive."""
    for deep in (DEEP_ROW, DEEP_NUMBER, DEEP_UNKNOWN):
        orjson.loads(deep)
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(
                deep.replace(b"[[", b"[[[", 1)
                .replace(b"]]", b"]]]", 1)
                .replace(b'{"x":', b'{"x":{"x":', 1)
                .replace(b"}}", b"}}}", 1)
            )


def test_validate_rows_alone_names_rows_that_are_not_objects():
    """Other routes build rows themselves and call validate_rows directly."""
    with pytest.raises(RequestError) as raised:
        validate_rows([ROW, None, [ROW]], SCHEMA, field="rows")
    assert [e["field"] for e in raised.value.errors] == ["rows[1]", "rows[2]"]


@pytest.mark.parametrize(
    "value, ok",
    [
        ("2013-06-01T10:00", True),
        (17, True),
        (None, True),
        (1.5, True),
        ([["2013"]], False),
        ({"a": 1}, False),
        ("x" * 1001, False),
        ("a\0b", False),
        (True, False),
    ],
)
def test_fields_kept_beside_the_features_are_scalars(value, ok):
    """The event time and key go to the log with the features: a nested value there must be refused here,
    not fail the log write (which would read as a log outage)."""
    schema = Schema(numeric=("x",), categorical=(), nullable=frozenset())
    rows = [{"x": 1.0, "when": value}]
    if ok:
        validate_rows(rows, schema, allowed=frozenset({"when"}))
        return
    with pytest.raises(RequestError) as raised:
        validate_rows(rows, schema, allowed=frozenset({"when"}))
    assert raised.value.status == 422 and raised.value.errors[0]["field"] == "instances[0].when"
