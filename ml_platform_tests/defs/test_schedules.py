"""Schedules spread over the hour: each model's data schedule, morning load and retrain schedule fire at the
model's own minute (`schedule.minute`, else a stable hash of its name, moved on past minutes that already hold
two of the location's models), so a location's models do not all start their runs at the same minute."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import dagster as dg
import pytest

from ml_platform.defs import conventions
from ml_platform.spec import SpecError, load_spec


def _crons(spec) -> dict[str, str]:
    """The model's schedules and the cron of its morning load, by name."""
    from ml_platform.defs import build_definitions

    repository = build_definitions([spec]).get_repository_def()
    crons = {s.name.removeprefix(f"{spec.name}_"): s.cron_schedule for s in repository.schedule_defs}
    condition = json.loads(
        dg.serialize_value(repository.asset_graph.get(conventions.key(spec, "raw")).automation_condition)
    )
    crons["raw_automation"] = _find_cron(condition)
    return crons


def _find_cron(node) -> str | None:
    if isinstance(node, dict):
        if "cron_schedule" in node:
            return node["cron_schedule"]
        return next((c for c in map(_find_cron, node.values()) if c), None)
    if isinstance(node, list):
        return next((c for c in map(_find_cron, node) if c), None)
    return None


def test_two_models_fire_at_different_minutes_each_at_its_own(home, tmp_path, write_spec):
    first = load_spec(write_spec(tmp_path, {"name": "flight_delay"}, name="a.yaml"))
    second = load_spec(write_spec(tmp_path, {"name": "flight_origin", "serving.port": 8091}, name="b.yaml"))
    minutes = conventions.schedule_minute(first), conventions.schedule_minute(second)
    assert minutes[0] != minutes[1]
    for spec, minute in zip((first, second), minutes, strict=True):
        crons = _crons(spec)
        assert crons["data_schedule"] == f"{minute} 2 * * *"  # daily data: the day before, at 02:MM
        assert crons["retrain_schedule"].startswith(f"{minute} 3 * * ")  # weekly retraining at 03:MM
        assert crons["raw_automation"] == f"{minute} 2 * * *"


def test_many_models_spread_over_the_hour():
    names = [f"model_{i:03d}" for i in range(100)]
    hashed = [conventions.schedule_minute(load_spec_named(name)) for name in names]
    assert max(hashed.count(m) for m in set(hashed)) == 5  # the name alone: 5 models at one minute

    spread = conventions.spread_minutes([load_spec_named(name) for name in names])
    minutes = [spec.schedule.minute for spec in spread]
    assert all(m is not None and 0 <= m <= 59 for m in minutes)
    assert max(minutes.count(m) for m in set(minutes)) == conventions.MODELS_PER_MINUTE == 2
    moved = [(m - h) % 60 for m, h in zip(minutes, hashed, strict=True)]
    assert max(moved) <= 3  # each at its name's minute or a few minutes after it
    # whatever order the files come in
    shuffled = conventions.spread_minutes([load_spec_named(name) for name in reversed(names)])
    assert {s.name: s.schedule.minute for s in shuffled} == dict(zip(names, minutes, strict=True))
    # beyond 120 models, ceil(N / 60) a minute
    many = [s.schedule.minute for s in conventions.spread_minutes([load_spec_named(f"m{i}") for i in range(300)])]
    assert max(many.count(m) for m in set(many)) == 5 and len(set(many)) == 60


def test_a_crowded_minute_moves_the_next_model_on_and_a_set_minute_stays(home, tmp_path, write_spec):
    by_minute: dict[int, list[str]] = {}
    for i in range(200):
        by_minute.setdefault(conventions.schedule_minute(load_spec_named(f"model_{i:03d}")), []).append(
            f"model_{i:03d}"
        )
    minute, (first, second, *_) = next((m, n) for m, n in sorted(by_minute.items()) if len(n) >= 2 and m < 59)
    specs = [
        load_spec(write_spec(tmp_path, {"name": "fixed", "schedule": {"minute": minute}}, name="0.yaml")),
        load_spec(write_spec(tmp_path, {"name": first, "serving.port": 8091}, name="1.yaml")),
        load_spec(write_spec(tmp_path, {"name": second, "serving.port": 8092}, name="2.yaml")),
    ]
    from ml_platform.defs import build_definitions

    crons = {s.name: s.cron_schedule for s in build_definitions(specs).get_repository_def().schedule_defs}
    assert crons["fixed_data_schedule"] == f"{minute} 2 * * *"  # the spec's own minute is never moved
    assert crons[f"{first}_data_schedule"] == f"{minute} 2 * * *"
    assert crons[f"{second}_data_schedule"] == f"{minute + 1} 2 * * *"  # the third at that minute moves on
    assert crons[f"{second}_retrain_schedule"].startswith(f"{minute + 1} 3 * * ")


def load_spec_named(name: str):
    from ml_platform.spec import BUNDLED_SPECS

    return load_spec(BUNDLED_SPECS / "flight_delay.yaml").model_copy(update={"name": name})


def test_the_same_name_gets_the_same_minute_in_every_process():
    expected = int(hashlib.sha256(b"flight_delay").hexdigest(), 16) % 60
    assert conventions.schedule_minute(load_spec_named("flight_delay")) == expected == 15
    probe = (
        "from ml_platform.defs import conventions; from ml_platform.spec import BUNDLED_SPECS, load_spec; "
        "print(conventions.schedule_minute(load_spec(BUNDLED_SPECS / 'flight_delay.yaml')))"
    )
    for seed in ("1", "2"):  # Python's own str hash differs per process; the minute must not
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        assert int(result.stdout.strip()) == expected


def test_the_spec_overrides_the_minute(home, tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path, {"schedule": {"minute": 7}}))
    assert conventions.schedule_minute(spec) == 7
    crons = _crons(spec)
    assert crons["data_schedule"] == "7 2 * * *"
    assert crons["retrain_schedule"].startswith("7 3 * * ")
    assert crons["raw_automation"] == "7 2 * * *"
    # when a run starts is not what it produces: the spec's digest (the assets' code version) stays the same
    assert spec.digest == load_spec(write_spec(tmp_path, {}, name="plain.yaml")).digest


def test_hourly_data_loads_each_hour_at_the_models_minute(home, tmp_path, write_spec):
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "schedule": {"minute": 41},
                "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
                "partitions": {"cadence": "hourly", "start": "2024-01-01", "end": "2024-06-01"},
                "training.cadence": "daily",
                "monitoring.model_freshness": None,
                "monitoring.endpoint_freshness": None,
            },
        )
    )
    crons = _crons(spec)
    assert crons["data_schedule"] == "41 * * * *"
    assert crons["retrain_schedule"] == "41 3 * * *"


@pytest.mark.parametrize("minute", [60, -1, "half past", True, 7.5])
def test_a_wrong_minute_is_a_spec_error_naming_file_field_and_fix(tmp_path, write_spec, minute):
    path = write_spec(tmp_path, {"schedule": {"minute": minute}})
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    message = str(caught.value)
    assert str(path) in message
    assert f"schedule.minute: found {minute!r}" in message
    assert "a minute past the hour from 0 to 59" in message and "leave schedule.minute out" in message


def test_an_unknown_schedule_field_suggests_minute(tmp_path, write_spec):
    with pytest.raises(SpecError, match="did you mean 'minute'"):
        load_spec(write_spec(tmp_path, {"schedule": {"minutes": 5}}))
