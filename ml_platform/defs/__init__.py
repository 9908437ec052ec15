"""The Dagster wiring: one lineage graph per model spec, built from the pure logic in `core`."""

from __future__ import annotations

import warnings

import dagster as dg

from ml_platform import settings
from ml_platform.core.sources import open_source
from ml_platform.defs.data_assets import IO_MANAGER_KEY, build_data_assets, build_data_job
from ml_platform.defs.io_manager import PartitionedParquetIOManager
from ml_platform.defs.partitions import data_partitions
from ml_platform.defs.monitoring_assets import build_monitoring_assets
from ml_platform.defs.resources import tracking_from_env
from ml_platform.defs.sensors import (alert_on_run_failure, build_new_data_sensor, build_online_challenger_sensor,
                                     build_retrain_sensor, build_rollback_sensor, build_staleness_sensor)
from ml_platform.defs.serving_assets import build_serving_assets
from ml_platform.defs.training_assets import build_training_assets, training_partitions
from ml_platform.spec import ModelSpec


# Single-run backfills (a year of days in one run) and content-hash data versions are marked beta; both are
# deliberate choices here, so their warnings are noise for users.
warnings.filterwarnings("ignore", message=".*(backfill_policy|data_version).*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    """Assets, checks and resources for every spec; state lives under ML_PLATFORM_HOME."""
    pin_dir = settings.home() / "replay"
    # Dagster's own automation sensor starts stopped; this one runs by default so the declared conditions act.
    automation = dg.AutomationConditionSensorDefinition(
        "ml_platform_automation", target=dg.AssetSelection.all(), default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30, description="Evaluates every asset's automation condition.")
    assets, jobs, schedules, sensors = [], [], [], [alert_on_run_failure, automation]
    for spec in specs:
        source = open_source(spec, pin_dir)
        partitions = data_partitions(spec, source)
        assets += build_data_assets(spec, source, partitions)
        data_job, data_schedule = build_data_job(spec)
        jobs.append(data_job)
        schedules.append(data_schedule)
        training, training_jobs, training_schedules = build_training_assets(spec, partitions)
        assets += training
        jobs += training_jobs
        assets += build_serving_assets(spec, partitions)
        assets += build_monitoring_assets(spec, partitions)
        sensors.append(build_retrain_sensor(spec, f"{spec.name}_retrain", training_partitions(spec, partitions)))
        sensors.append(build_rollback_sensor(spec))
        optional = (build_online_challenger_sensor(spec), build_staleness_sensor(spec),
                    build_new_data_sensor(spec, f"{spec.name}_data", partitions))
        sensors += [sensor for sensor in optional if sensor is not None]
        schedules += training_schedules
    return dg.Definitions(
        assets=assets,
        jobs=jobs,
        schedules=schedules,
        sensors=sensors,
        resources={IO_MANAGER_KEY: PartitionedParquetIOManager(base_path=settings.storage_url()),
                   "mlflow_tracking": tracking_from_env()},
    )
