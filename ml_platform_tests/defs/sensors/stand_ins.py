"""Models as the shared sensors see them, without the whole platform: each model's spec, small partitions, and
stand-ins for the assets and jobs the sensors start (`<model>_data` over `raw`, `<model>_retrain` over `model`),
named the way the platform names them."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.sensors import Watched
from ml_platform.defs.serving_assets import deploy_job
from ml_platform.spec import ModelSpec, load_spec

DAYS = dg.DailyPartitionsDefinition(start_date="2024-01-01", end_date="2024-02-01")
WEEKS = dg.WeeklyPartitionsDefinition(start_date="2024-01-08", end_date="2024-02-01")


def stand_in(spec: ModelSpec) -> tuple[Watched, list[dg.AssetsDefinition]]:
    """The model with stand-in `raw` (daily), `model` (weekly) and `endpoint` assets and its data, retrain and
    deploy jobs."""

    @dg.asset(key=conventions.key(spec, "raw"), partitions_def=DAYS)
    def raw() -> None:
        """Stands in for the data stage."""

    @dg.asset(key=conventions.key(spec, "model"), partitions_def=WEEKS)
    def model() -> None:
        """Stands in for the training stage."""

    @dg.asset(key=conventions.key(spec, "endpoint"))
    def endpoint() -> None:
        """Stands in for the serving stage."""

    jobs = [
        dg.define_asset_job(conventions.data_job_name(spec), selection=[raw.key]),
        dg.define_asset_job(conventions.retrain_job_name(spec), selection=[model.key]),
        deploy_job(spec),
    ]
    return Watched(spec, DAYS, WEEKS, {job.name: job for job in jobs}), [raw, model, endpoint]


def specs(folder: Path, write_spec, names: list[str], overrides: dict | None = None) -> list[ModelSpec]:
    """Copies of the bundled spec under other names (with the same `overrides`)."""
    return [load_spec(write_spec(folder, {**(overrides or {}), "name": name}, name=f"{name}.yaml")) for name in names]


def definitions(models: list[tuple[Watched, list[dg.AssetsDefinition]]], sensor: dg.SensorDefinition) -> dg.Definitions:
    """The stand-ins of every model, their jobs and one shared sensor."""
    return dg.Definitions(
        assets=[asset for _watched, assets in models for asset in assets],
        jobs=[job for watched, _assets in models for job in watched.jobs.values()],
        sensors=[sensor],
    )
