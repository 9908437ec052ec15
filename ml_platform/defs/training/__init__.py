"""The training layer of one model: training_set → model → evaluation (gates) → champion, one module each.

All four share the retraining partitions (weekly for flight_delay): partition W trains on the `window_days`
days of features that end with W's last day. The model step owns one MLflow run; evaluation resumes it to add
holdout metrics, plots and the model card; champion moves registry aliases only when every gate passed.

The retrain job runs its four steps in the run's own process (`dg.in_process_executor`): they are a strict
chain, so the multiprocess executor has nothing to run in parallel and only adds a fresh Python per step that
imports Dagster, MLflow, LightGBM and pandas again (about 4 s each; a launched retrain took 20-24 s instead of
~5 s). A failed step still fails the run the same way: its downstream steps are skipped and nothing moves in
the registry (tested with a launched run in ml_platform_tests/defs/training/test_launched_retrain.py).
"""

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.training.champion import champion_asset
from ml_platform.defs.training.evaluation import evaluation_asset
from ml_platform.defs.training.model import model_asset
from ml_platform.defs.training.registry_jobs import registry_jobs
from ml_platform.defs.training.training_set import training_set_asset
from ml_platform.spec import ModelSpec

STAGES = ("training_set", "model", "evaluation", "champion")


def build_training(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.Definitions:
    """The four stages on the retraining partitions, the retrain job and its schedule, the registry jobs."""
    assets = [build(spec, partitions) for build in (training_set_asset, model_asset, evaluation_asset, champion_asset)]
    retrain = dg.define_asset_job(
        conventions.retrain_job_name(spec),
        selection=dg.AssetSelection.assets(*(conventions.key(spec, stage) for stage in STAGES)),
        description=f"Retrain {spec.name} for one {spec.training.cadence} partition: training_set → champion.",
        tags={**conventions.model_tags(spec), conventions.TRAINING_TAG: spec.name},
        executor_def=dg.in_process_executor,
    )
    # 03:MM, an hour after the data schedule (02:MM), at the model's own minute MM
    schedule = dg.build_schedule_from_partitioned_job(
        retrain,
        hour_of_day=3,
        minute_of_hour=conventions.schedule_minute(spec),
        name=f"{spec.name}_retrain_schedule",
    )
    return dg.Definitions(assets=assets, jobs=[retrain, *registry_jobs(spec)], schedules=[schedule])
