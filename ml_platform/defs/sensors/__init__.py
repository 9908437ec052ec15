"""Sensors that close the loop, one module per family:

- `alerts`: alert on failed runs (one sensor for all models) and on assets going stale and fresh again;
- `retraining`: retrain (once per episode) when drift or live performance fails;
- `registry_decisions`: roll a regressing champion back; promote or retire a challenger on trial online;
- `new_data`: materialize a day when its file lands.

One sensor per family serves every model of the code location (`per_model`): it looks at each model in turn
with the model's own cursor (the sensor's cursor is keyed by model name), requests runs of that model's jobs
with its tags, and names per model why nothing ran; one model that cannot be evaluated does not stop the
others. All run by default under `dagster dev`. The decisions themselves are pure and live in `core`
(`performance` judges rollbacks and challengers, `retraining` keeps the retrain cursor); the sensors read
records, call them, and act.
"""

from __future__ import annotations

from collections.abc import Sequence

import dagster as dg

from ml_platform.defs.sensors.alerts import alert_on_run_failure, staleness_sensor
from ml_platform.defs.sensors.new_data import new_data_sensor
from ml_platform.defs.sensors.per_model import Watched
from ml_platform.defs.sensors.registry_decisions import online_challenger_sensor, rollback_sensor
from ml_platform.defs.sensors.retraining import retrain_sensor

__all__ = ["Watched", "alert_on_run_failure", "build_sensors"]


def build_sensors(models: Sequence[Watched]) -> list[dg.SensorDefinition]:
    """The sensors that serve every model: retrain on monitoring and rollback whenever there is a model; the
    online challenger, staleness alerts and new-data sensor only when some spec asks for what they watch.
    `alert_on_run_failure` is not among them: it needs no model and is added once. The rollback and online
    challenger sensors redeploy through each model's `<model>_deploy` job (built with its serving stage)."""
    if not models:
        return []
    sensors = (
        retrain_sensor(models),
        rollback_sensor(models),
        online_challenger_sensor(models),
        staleness_sensor(models),
        new_data_sensor(models),
    )
    return [sensor for sensor in sensors if sensor is not None]
