"""The spec's JSON Schema for editors: the repository's copy is fresh, the bundled spec points at it, real specs
pass it, mistakes an editor should underline fail it, and every field an author writes has hover docs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from ml_platform import cli
from ml_platform.spec import BUNDLED_SPECS, load_spec
from ml_platform.spec.json_schema import REFRESH, SCHEMA_FILE, spec_schema, spec_schema_text
from ml_platform.spec.loading import parse_yaml

REPO = Path(__file__).resolve().parents[2]
MODELINE = "# yaml-language-server: $schema="
SPECS = [BUNDLED_SPECS / "flight_delay.yaml", *sorted((REPO / "ml_platform_tests" / "specs").glob("*.yaml"))]


def _as_the_editor_reads(path: Path) -> object:
    """A spec as the YAML language server checks it: JSON values (an unquoted date is text there)."""
    return json.loads(json.dumps(parse_yaml(path.read_text()), default=str))


def test_the_repository_schema_is_fresh():
    kept = (REPO / SCHEMA_FILE).read_text()
    assert kept == spec_schema_text(), f"{SCHEMA_FILE} is stale: run `{REFRESH}`"


def test_the_bundled_spec_points_editors_at_the_repository_schema():
    spec = BUNDLED_SPECS / "flight_delay.yaml"
    first = spec.read_text().splitlines()[0]
    assert first.startswith(MODELINE)
    assert (spec.parent / first.removeprefix(MODELINE)).resolve() == (REPO / SCHEMA_FILE).resolve()
    load_spec(spec)  # the line is a comment: the spec still loads


def test_the_schema_is_a_valid_json_schema():
    Draft202012Validator.check_schema(spec_schema())


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_the_repositorys_specs_pass_the_schema(path):
    load_spec(path)
    errors = [e.message for e in Draft202012Validator(spec_schema()).iter_errors(_as_the_editor_reads(path))]
    assert errors == []


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"trainig": {}}, ""),  # a typo
        ({"training": {"window_days": "a month"}}, "training"),
        ({"source": {"kind": "kafka"}}, "source"),
        ({"partitions": {"cadence": "fortnightly"}}, "partitions"),
        ({"partitions": {"freshness": {"fail_after": "two days"}}}, "partitions"),
        ({"serving": {"port": 70000}}, "serving"),
    ],
)
def test_the_schema_underlines_what_check_refuses(change, where):
    spec = {**_as_the_editor_reads(BUNDLED_SPECS / "flight_delay.yaml"), **change}  # type: ignore[dict-item]
    errors = list(Draft202012Validator(spec_schema()).iter_errors(spec))
    assert errors, f"{change} passed the schema"
    assert all(e.absolute_path[0] == where if where else not e.absolute_path for e in errors)


def test_every_field_an_author_writes_has_hover_docs():
    schema = spec_schema()
    missing = [
        f"{section}.{field}"
        for section, definition in {"ModelSpec": schema, **schema["$defs"]}.items()
        for field, prop in definition.get("properties", {}).items()
        if not prop.get("description")
    ]
    assert missing == []


def test_durations_read_as_an_author_writes_them():
    tuning = spec_schema()["$defs"]["Tuning"]["properties"]["timeout"]
    assert tuning["default"] == "10m"
    validator = Draft202012Validator(tuning)
    assert validator.is_valid("26h") and validator.is_valid(90) and not validator.is_valid("PT10M")


def test_ml_platform_schema_prints_or_writes_it(tmp_path, capsys):
    assert cli.main(["schema"]) == 0
    assert capsys.readouterr().out == spec_schema_text()
    out = tmp_path / "spec.schema.json"
    assert cli.main(["schema", "--output", str(out)]) == 0
    assert out.read_text() == spec_schema_text()
