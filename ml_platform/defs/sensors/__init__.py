"""Sensors that close the loop, one module per family:

- `alerts`: alert on failed runs (one sensor for all models) and on assets going stale and fresh again;
- `retraining`: retrain (once per episode) when drift or live performance fails;
- `registry_decisions`: roll a regressing champion back; promote or retire a challenger on trial online;
- `new_data`: materialize a day when its file lands.

All run by default under `dagster dev`. The decisions themselves are pure and live in `core` (`performance`
judges rollbacks and challengers, `retraining` keeps the retrain cursor); the sensors read records, call them,
and act.
"""

from __future__ import annotations

import dagster as dg

from ml_platform.defs.sensors.alerts import alert_on_run_failure, staleness_sensor
from ml_platform.defs.sensors.new_data import new_data_sensor
from ml_platform.defs.sensors.registry_decisions import online_challenger_sensor, rollback_sensor
from ml_platform.defs.sensors.retraining import retrain_sensor
from ml_platform.spec import ModelSpec

__all__ = ["alert_on_run_failure", "build_sensors"]


def build_sensors(
    spec: ModelSpec, data_partitions: dg.TimeWindowPartitionsDefinition, training_partitions: dg.PartitionsDefinition
) -> dg.Definitions:
    """The sensors of one model: retrain on monitoring and rollback always; the online challenger, staleness
    alerts and new-data sensor only when the spec asks for what they watch. `alert_on_run_failure` is not
    among them: it serves every model and is added once."""
    optional = (online_challenger_sensor(spec), staleness_sensor(spec), new_data_sensor(spec, data_partitions))
    return dg.Definitions(
        sensors=[
            retrain_sensor(spec, training_partitions),
            rollback_sensor(spec),
            *(sensor for sensor in optional if sensor is not None),
        ]
    )
