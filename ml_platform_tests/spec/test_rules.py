"""Rules across fields: each names the field, what was found and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_platform.spec import SpecError, load_spec


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_target_without_column_or_expression(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"target": {"name": "delayed"}}))
    assert "target:" in message and "exactly one of 'target.column' or 'target.expression'" in message


def test_feature_not_in_the_data(tmp_path, write_spec):
    path = write_spec(tmp_path, {"features.numeric": ["distance", "distanse"]})
    message = _error(path)
    assert str(path) in message
    assert "features.numeric[1]: found 'distanse'" in message
    assert "did you mean 'distance'" in message


def test_an_online_rollout_needs_a_local_endpoint(tmp_path, write_spec):
    path = write_spec(tmp_path, {"serving.target": "docker", "serving.rollout": {"mode": "canary"}})
    message = _error(path)
    assert str(path) in message and "serving.rollout.mode: found 'canary'" in message
    assert "use target: local" in message
    assert load_spec(write_spec(tmp_path, {"serving.rollout": {"mode": "canary", "window_days": 5}},
                                name="ok.yaml")).serving.rollout.trial_days == 5


def test_target_leak_and_duplicate_features(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"features.numeric": ["distance", "arr_delay", "distance"]}))
    assert "features.numeric[1]: found 'arr_delay'" in message and "leak" in message
    assert "features.numeric[2]: found 'distance'" in message and "once" in message


def test_derived_feature_must_import(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"features.derived": [
        {"name": "x", "function": "ml_platform.core.derived:no_such_function"}]}))
    assert "features.derived[0].function" in message and "importable" in message


def test_a_source_without_its_own_calendar_needs_a_start(tmp_path, write_spec):
    path = write_spec(tmp_path, {"source": {"kind": "files", "path": "/data/{date}.csv"}})
    assert "partitions.start: found None" in _error(path)
    start = write_spec(tmp_path, {"source": {"kind": "files", "path": "/data/{date}.csv"},
                                  "partitions.start": "2024-01-01"}, name="start.yaml")
    assert load_spec(start).source.kind == "files"
