"""`build_sensors`: one sensor per family for every model of the code location, the optional families only
when some spec asks for what they watch; each sensor declares every model's job it may start."""

from __future__ import annotations

import pytest

from ml_platform.defs.sensors import build_sensors
from ml_platform_tests.defs.sensors.stand_ins import specs, stand_in

ALWAYS = {"retrain_on_monitoring", "rollback_on_regression"}
CANARY = {"serving.rollout": {"mode": "canary", "fraction": 0.2, "key": "carrier"}}
DAILY_FILES = {
    "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
    "partitions.start": "2024-01-01",
    "partitions.freshness": None,
    "monitoring.model_freshness": None,
    "monitoring.endpoint_freshness": None,
}


@pytest.mark.parametrize(
    "overrides, optional",
    [({}, {"staleness_alerts"}), (CANARY, {"staleness_alerts", "online_challenger"}), (DAILY_FILES, {"new_data"})],
)
def test_one_models_sensors(overrides, optional, tmp_path, write_spec):
    (spec,) = specs(tmp_path / "specs", write_spec, ["flight_delay"], overrides)
    sensors = {sensor.name: sensor for sensor in build_sensors([stand_in(spec)[0]])}
    assert set(sensors) == ALWAYS | optional
    retrain = sensors["retrain_on_monitoring"]
    assert [job.name for job in retrain.jobs] == ["flight_delay_retrain"] and retrain.minimum_interval_seconds == 30
    assert [job.name for job in sensors["rollback_on_regression"].jobs] == ["flight_delay_deploy"]


def test_one_sensor_per_family_serves_every_model(tmp_path, write_spec):
    """Three models, one sensor per family; a family appears when one model needs it and targets only the
    models that need it."""
    models = [
        stand_in(spec)[0]
        for spec in [
            *specs(tmp_path / "plain", write_spec, ["alpha", "beta"]),
            *specs(tmp_path / "canary", write_spec, ["gamma"], CANARY),
        ]
    ]
    sensors = {sensor.name: sensor for sensor in build_sensors(models)}
    assert set(sensors) == ALWAYS | {"staleness_alerts", "online_challenger"}
    assert [job.name for job in sensors["retrain_on_monitoring"].jobs] == [
        "alpha_retrain",
        "beta_retrain",
        "gamma_retrain",
    ]
    assert [job.name for job in sensors["rollback_on_regression"].jobs] == [
        "alpha_deploy",
        "beta_deploy",
        "gamma_deploy",
    ]
    assert [job.name for job in sensors["online_challenger"].jobs] == ["gamma_deploy"]
    # Both registry sensors start the same deploy job of a model.
    assert sensors["online_challenger"].jobs[0] is sensors["rollback_on_regression"].jobs[2]
    assert build_sensors([]) == []
