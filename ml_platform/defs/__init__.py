"""The Dagster wiring: one lineage graph per model spec, built stage by stage from the pure logic in `core`.

Each stage's builder returns the `dg.Definitions` of one model's stage (data, training, serving, monitoring);
they are merged, and the platform's conventions (group, owner, tags, code version, freshness, IO manager) are
stamped once over the result by `conventions.apply`. The sensors are built once for every model (`sensors`:
one per family, each model with its own cursor).

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

import dagster as dg

from ml_platform import settings
from ml_platform.core.sources import open_source
from ml_platform.defs import conventions
from ml_platform.defs.data_assets import build_data
from ml_platform.defs.io_manager import PartitionedParquetIOManager
from ml_platform.defs.monitoring_assets import build_monitoring
from ml_platform.defs.partitions import data_partitions, training_partitions
from ml_platform.defs.resources import dask_from_env, tracking_from_env
from ml_platform.defs.sensors import Watched, alert_on_run_failure, build_sensors
from ml_platform.defs.serving_assets import build_serving
from ml_platform.defs.training import build_training
from ml_platform.spec import ModelSpec

# Single-run backfills (a year of days in one run) and content-hash data versions are marked beta; both are
# deliberate choices here, so their warnings are noise for users.
warnings.filterwarnings("ignore", message=".*(backfill_policy|data_version).*", category=dg.BetaWarning)
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")
warnings.filterwarnings("ignore", message=".*map_resolved_asset_specs.*", category=dg.PreviewWarning)


def build_model(spec: ModelSpec) -> tuple[dg.Definitions, Watched]:
    """Every stage of one model, with the platform's conventions applied, and the model as the shared sensors
    watch it."""
    source = open_source(spec, settings.home() / "replay")
    data = data_partitions(spec, source)
    training = training_partitions(spec, data)
    stages = [
        build_data(spec, source, data),
        build_training(spec, training),
        build_serving(spec, data),
        build_monitoring(spec, data),
    ]
    defs = conventions.apply(dg.Definitions.merge(*stages), spec)
    return defs, Watched.of(spec, data, training, defs)


def build_definitions(specs: list[ModelSpec]) -> dg.Definitions:
    """Every model's graph, the sensors that serve all models, and the resources; state under ML_PLATFORM_HOME."""
    # Dagster's own automation sensor starts stopped; this one runs by default so the declared conditions act.
    automation = dg.AutomationConditionSensorDefinition(
        "ml_platform_automation",
        target=dg.AssetSelection.all(),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        description="Evaluates every asset's automation condition.",
    )
    models = [build_model(spec) for spec in specs]
    shared = dg.Definitions(
        sensors=[alert_on_run_failure, automation, *build_sensors([watched for _defs, watched in models])],
        executor=dg.in_process_executor,
        resources={
            conventions.IO_MANAGER_KEY: PartitionedParquetIOManager(base_path=settings.storage_url()),
            conventions.MLFLOW_RESOURCE_KEY: tracking_from_env(),
            conventions.DASK_RESOURCE_KEY: dask_from_env(),
        },
    )
    return dg.Definitions.merge(*(defs for defs, _watched in models), shared)
