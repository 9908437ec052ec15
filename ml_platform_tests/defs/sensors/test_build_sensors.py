"""`build_sensors`: one model's sensors, the optional ones only when the spec asks for what they watch."""

from __future__ import annotations

import dagster as dg
import pytest

from ml_platform.defs.sensors import build_sensors
from ml_platform.spec import load_spec

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-06-01")
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-02-26", end_date="2024-06-01")
ALWAYS = {"flight_delay_retrain_on_monitoring", "flight_delay_rollback_on_regression"}


@pytest.mark.parametrize(
    "overrides, optional",
    [
        ({}, {"flight_delay_staleness_alerts"}),
        (
            {"serving.rollout": {"mode": "canary", "fraction": 0.2, "key": "carrier"}},
            {"flight_delay_staleness_alerts", "flight_delay_online_challenger"},
        ),
        (
            {
                "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
                "partitions.start": "2024-01-01",
                "partitions.freshness": None,
                "monitoring.model_freshness": None,
                "monitoring.endpoint_freshness": None,
            },
            {"flight_delay_new_data"},
        ),
    ],
)
def test_one_models_sensors(overrides, optional, tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path / "specs", overrides))
    defs = build_sensors(spec, DAYS, WEEKS)
    assert isinstance(defs, dg.Definitions)
    sensors = {sensor.name: sensor for sensor in defs.sensors}  # the jobs they target come from other stages
    assert set(sensors) == ALWAYS | optional
    retrain = sensors["flight_delay_retrain_on_monitoring"]
    assert retrain.job_name == "flight_delay_retrain" and retrain.minimum_interval_seconds == 30
