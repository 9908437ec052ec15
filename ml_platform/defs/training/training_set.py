"""`<model>/training_set`: the window of feature days that ends with a retraining partition, split by time.
With `training.engine: dask` the window is split on the workers and stored by them; it never comes here."""

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.partitions import partition_windows, window_mapping
from ml_platform.defs.resources import DaskCluster, engine_step
from ml_platform.spec import ModelSpec


def training_set_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    training = spec.training
    refit = ", then the final model trains on them too (training.refit)" if training.refit else ""

    @conventions.asset(
        spec,
        "training_set",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={conventions.frame_kind(spec), "parquet"},
        description=f"The last {training.window_days} days of features as of each retraining partition "
        f"({spec.partitions.cadence} data partitions), "
        f"split by time: train, validation ({training.validation_days} days: early stopping "
        f"picks the rounds{refit}), "
        f"test ({training.test_days} newest days, held out).",
        ins={
            "features": dg.AssetIn(
                conventions.key(spec, "features"),
                partition_mapping=window_mapping(spec),
                metadata=conventions.frame_input(spec, allow_missing_partitions=True),
            )
        },
    )
    def training_set(context: dg.AssetExecutionContext, dask_cluster: DaskCluster, features):
        from ml_platform.core.training_run import TrainingError

        try:
            keys = list(context.asset_partition_keys_for_input("features"))
            windows = partition_windows(context.asset_partitions_def_for_input("features"), keys)
            with engine_step(spec, dask_cluster, features) as (engine, cluster):
                built = engine.build_training_set(features, spec, windows)
            return dg.Output(built.frame, metadata={**built.metadata(), **cluster})
        except TrainingError as error:
            raise dg.Failure(f"partition {context.partition_key}: {error}") from None

    return training_set
