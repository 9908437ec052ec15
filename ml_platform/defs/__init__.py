"""The Dagster wiring: one lineage graph per model spec, built stage by stage from the pure logic in `core`.

Each stage's builder returns the `dg.Definitions` of one model's stage (data, training, serving, monitoring),
its assets declared with `conventions.asset`, which adds the platform's conventions (key, group, owner, tags,
code version, freshness); they are merged and the model's jobs resolved against its own graph. The sensors are
built once for every model (`sensors`: one per family, each model with its own cursor).

Executor: every job, and the implicit asset job behind the UI's "Materialize" button, runs its steps in the
run's own process (`dg.in_process_executor`, the Definitions' default). Each model's graph is a chain (raw →
features → training_set → model → evaluation → champion → endpoint), so the multiprocess executor's parallelism
buys nothing per run, while its fresh Python per step costs ~4 s of imports each. Data backfills over many days
are one run per range (`BackfillPolicy.single_run`), one step per stage over every day, so they gain nothing
from per-step processes either; parallelism across runs comes from the run queue (dagster.yaml). A job that does
have independent heavy steps can still declare `executor_def=dg.multiprocess_executor` for itself.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import dagster as dg

# Not exported by `dagster`: the asset graph a model's own jobs are resolved against (`_resolved`), and the two
# unresolved kinds it resolves.
from dagster._core.definitions.assets.graph.asset_graph import AssetGraph
from dagster._core.definitions.partitions.partitioned_schedule import UnresolvedPartitionedAssetScheduleDefinition
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from ml_platform import settings
from ml_platform.core.sources import open_source
from ml_platform.defs import conventions
from ml_platform.defs.data_assets import build_data
from ml_platform.defs.io_manager import PartitionedParquetIOManager
from ml_platform.defs.monitoring_assets import build_monitoring
from ml_platform.defs.partitions import data_partitions, training_partitions
from ml_platform.defs.resources import dask_from_env, tracking_from_env
from ml_platform.defs.run_scope import models_of_this_run
from ml_platform.defs.sensors import Watched, alert_on_run_failure, build_sensors
from ml_platform.defs.serving_assets import build_serving
from ml_platform.defs.training import build_training
from ml_platform.spec import ModelSpec

# Single-run backfills (a year of days in one run) and content-hash data versions are marked beta; both are
# deliberate choices here, so their warnings are noise for users.
warnings.filterwarnings("ignore", message=".*(backfill_policy|data_version).*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

# The Definitions' default executor, also given to each model's jobs when they are resolved (`_resolved`).
EXECUTOR = dg.in_process_executor


def build_model(spec: ModelSpec, resources: Mapping[str, Any]) -> tuple[dg.Definitions, Watched]:
    """Every stage of one model, its jobs resolved (with the code location's `resources`), and the model as the
    shared sensors watch it."""
    source = open_source(spec, settings.home() / "replay")
    data = data_partitions(spec, source)
    training = training_partitions(spec, data)
    stages = [
        build_data(spec, source, data),
        build_training(spec, training),
        build_serving(spec, data),
        build_monitoring(spec, data),
    ]
    defs = _resolved(dg.Definitions.merge(*stages), resources)
    return defs, Watched.of(spec, data, training, defs)


def _resolved(defs: dg.Definitions, resources: Mapping[str, Any]) -> dg.Definitions:
    """The model's asset jobs resolved against the model's own assets, and its schedules built on them.

    Left to the repository, every asset job is resolved against every asset of the code location, each job
    scanning all of them: N models cost N² (at 300 models, two thirds of the load; paid again by every run, which
    rebuilds the repository, whose schedules resolve their jobs). A model's jobs select only its own stages, so
    its own graph resolves them to the same jobs, and the cost grows linearly with the number of models."""
    graph = AssetGraph.from_assets([a for a in defs.assets or () if isinstance(a, dg.AssetsDefinition)])
    jobs = {
        job.name: job.resolve(asset_graph=graph, default_executor_def=EXECUTOR, resource_defs=resources)
        if isinstance(job, UnresolvedAssetJobDefinition)
        else job
        for job in defs.jobs or ()
    }
    schedules = [
        schedule.resolve(jobs[schedule.job.name])
        if isinstance(schedule, UnresolvedPartitionedAssetScheduleDefinition)
        else schedule
        for schedule in defs.schedules or ()
    ]
    return dg.Definitions(
        assets=defs.assets,
        asset_checks=defs.asset_checks,
        jobs=list(jobs.values()),
        schedules=schedules,
        sensors=defs.sensors,
        resources=defs.resources,
        executor=defs.executor,
        loggers=defs.loggers,
        metadata=defs.metadata,
    )


# The automation sensor's interval: 30 s (Dagster's default), and 1.2 s per model beyond 25 models. One evaluation
# reads, judges and writes back the conditions of every asset of the location (6 CPU-seconds at 100 models), so a
# fixed interval would make the idle daemon's cost grow with the models; this keeps it flat (0.05 cores), and the
# cost is latency: at 100 models a cron tick or an upstream update is acted on within 2 minutes instead of 30 s.
AUTOMATION_INTERVAL_S = 30
AUTOMATION_S_PER_MODEL = 1.2


def automation_interval_seconds(models: int) -> int:
    return max(AUTOMATION_INTERVAL_S, round(AUTOMATION_S_PER_MODEL * models))


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    """Every model's graph, the sensors that serve all models, and the resources; state under ML_PLATFORM_HOME.
    Their minutes are spread over the whole location; then a run worker that knows its run builds only that run's
    models (`run_scope`)."""
    interval = automation_interval_seconds(len(specs))
    specs = models_of_this_run(conventions.spread_minutes(specs))
    # Dagster's own automation sensor starts stopped; this one runs by default so the declared conditions act.
    automation = dg.AutomationConditionSensorDefinition(
        "ml_platform_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval,
        description=f"Evaluates every asset's automation condition, every {interval} s.",
    )
    resources = {
        conventions.IO_MANAGER_KEY: PartitionedParquetIOManager(base_path=settings.storage_url()),
        conventions.MLFLOW_RESOURCE_KEY: tracking_from_env(),
        conventions.DASK_RESOURCE_KEY: dask_from_env(),
    }
    models = [build_model(spec, resources) for spec in specs]
    shared = dg.Definitions(
        sensors=[alert_on_run_failure, automation, *build_sensors([watched for _defs, watched in models])],
        executor=EXECUTOR,
        resources=resources,
    )
    return dg.Definitions.merge(*(defs for defs, _watched in models), shared)
