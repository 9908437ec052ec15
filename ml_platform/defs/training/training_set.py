"""`<model>/training_set`: the window of feature days that ends with a retraining partition, split by time."""

import dagster as dg
import pandas as pd

from ml_platform.core.training_run import TrainingError, build_training_set
from ml_platform.defs import conventions
from ml_platform.defs.partitions import window_mapping
from ml_platform.spec import ModelSpec


def training_set_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    training = spec.training

    @dg.asset(key=conventions.key(spec, "training_set"), partitions_def=partitions,
              io_manager_key=conventions.IO_MANAGER_KEY, kinds={"pandas", "parquet"},
              description=f"The last {training.window_days} days of features as of each retraining partition, "
                          f"split by time: train, validation ({training.validation_days} days, early stopping), "
                          f"test ({training.test_days} newest days, held out).",
              ins={"features": dg.AssetIn(conventions.key(spec, "features"), partition_mapping=window_mapping(spec),
                                          metadata={"allow_missing_partitions": True})})
    def training_set(context: dg.AssetExecutionContext, features: pd.DataFrame):
        try:
            built = build_training_set(features, spec, list(context.asset_partition_keys_for_input("features")))
        except TrainingError as error:
            raise dg.Failure(f"partition {context.partition_key}: {error}") from None
        return dg.Output(built.frame, metadata=built.metadata())

    return training_set
