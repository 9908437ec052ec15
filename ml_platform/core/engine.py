"""The engine a model's data work runs on, which every stage asks instead of testing what it was given:
`LocalEngine` (pandas frames in the step's process) or `DaskEngine` (lazy Dask DataFrames over the stored
partitions, `StoredPartitions`, computed by the workers of a Dask cluster).

The orchestrator picks one from the spec's `training.engine`, in one place (`defs/resources.engine_for`), and
hands it to the stages: build the training set, each day's data version, train, the example rows logged with
the model, the holdout evaluation reads, the batch predictions, drift's batch-scored features. The IO manager
loads an input with the engine its metadata names (`ENGINE_KEY`, written from the same choice) and lets the
workers store a Dask DataFrame (`DaskEngine.parts_of`).

Each engine delegates to the modules that hold its logic (local: `training_set`, `training`, `holdout`; Dask:
`dask_frames`, `dask_training`, `dask_scoring`, `dask_cluster`), imported by its methods only, so a local-only
user never imports Dask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    import dask.dataframe as dd
    import numpy as np
    import pandas as pd
    from distributed import Client
    from upath import UPath

    from ml_platform.core.dask_frames import StoredPartitions
    from ml_platform.core.holdout import Holdout
    from ml_platform.core.model import Model
    from ml_platform.core.training import TrainingResult
    from ml_platform.core.training_set import TrainingSet
    from ml_platform.spec import ModelSpec

ENGINE_KEY = "engine"  # an input's metadata: the name of the engine that loads it (none: the local engine)

Windows = Sequence[str] | Mapping[str, tuple[datetime, datetime]]  # a window's partitions (`build_training_set`)
Scorer = Callable[["Model", "pd.DataFrame"], float]  # a tuning trial's model on the validation rows


@dataclass
class BatchPredictions:
    """A run's batch predictions: each partition's rows (the engine's frames, as the IO manager stores them), the
    number of rows, and what the step's metadata summarises of them: the mean prediction (binary, regression;
    0.0 without rows) or how often each class is predicted (multiclass)."""

    parts: dict[str, Any]
    rows: int
    mean_prediction: float | None = None
    predicted_classes: dict[str, int] | None = None


class Engine(Protocol):
    """What a stage asks of its engine. A "frame" is the engine's: a pandas DataFrame (local) or the stored
    partitions as a lazy Dask DataFrame (`StoredPartitions`, Dask)."""

    name: ClassVar[str]  # what the spec's `training.engine` says
    kind: ClassVar[str]  # the kind of its frames, as the UI shows it: "pandas" or "dask"
    on_cluster: ClassVar[bool]  # computes on a cluster's workers (a step reports the cluster), not in the step

    def load(self, paths: list[UPath], keys: list[str | None]) -> Any:
        """Stored partitions (files, or folders of part files) as this engine's frame; `keys`: their keys."""
        ...

    def store(self, frame: Any, path: UPath) -> int:
        """One partition of this engine's frame stored at `path`, as `load` reads it back; the rows stored."""
        ...

    def check_fits(self, *stored: Any) -> None:
        """Refuse (`ClusterError`) before any work when a stored input cannot be computed partition by partition."""
        ...

    def build_training_set(self, features: Any, spec: ModelSpec, windows: Windows) -> TrainingSet:
        """The window's feature rows split by time (`core.training_set.build_training_set`)."""
        ...

    def versions(self, training_set: Any, timestamp: str) -> dict[str, str]:
        """Each day's data version of a stored training set."""
        ...

    def tune(
        self, spec: ModelSpec, training_set: Any, scorer: Scorer
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """The tuned parameters and the trials (`training.tuning`), or (None, []) when it does not tune."""
        ...

    def train(
        self,
        spec: ModelSpec,
        training_set: Any,
        override: dict[str, Any] | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ) -> TrainingResult:
        """The model of a stored training set: early stopping on the validation days, then the refit."""
        ...

    def example_rows(self, training_set: Any) -> pd.DataFrame:
        """Training rows for the logged model's input example and signature."""
        ...

    def holdout(self, spec: ModelSpec, training_set: Any, candidate: Model, champion: Model | None) -> Holdout:
        """What evaluation reads of a training set's held-out days."""
        ...

    def predictions(
        self,
        spec: ModelSpec,
        features: Any,
        model: Model,
        version: str,
        by_partition: Callable[[pd.DataFrame], dict[str, pd.DataFrame]],
    ) -> BatchPredictions:
        """The features scored by `model` (`version`): the key, timestamp and target columns, the prediction, a
        classifier's predicted label and the version. `by_partition` splits a pandas frame's rows into the run's
        partitions; an engine whose frame keeps its stored partitions needs none."""
        ...

    def with_predictions(self, spec: ModelSpec, features: Any, load_model: Callable[[], Model]) -> pd.DataFrame:
        """The features with the model's `prediction` column (multiclass: the predicted label), gathered here."""
        ...


class LocalEngine:
    """pandas frames in the step's process: a stored input is read whole."""

    name: ClassVar[str] = "local"
    kind: ClassVar[str] = "pandas"
    on_cluster: ClassVar[bool] = False

    @staticmethod
    def store(frame: pd.DataFrame, path: UPath) -> int:
        """One Parquet file, without the index."""
        with path.open("wb") as handle:
            write_parquet(frame, handle)
        return len(frame)

    def load(self, paths: list[UPath], keys: list[str | None]) -> pd.DataFrame:
        import pandas as pd

        from ml_platform.core.dask_frames import partition_files, read_file
        from ml_platform.core.features import concat_partitions

        frames = [read_file(f) for path in paths for f in partition_files(path)]
        return concat_partitions(frames) if frames else pd.DataFrame()

    def check_fits(self, *stored: Any) -> None:
        return None

    def build_training_set(self, features: pd.DataFrame, spec: ModelSpec, windows: Windows) -> TrainingSet:
        from ml_platform.core.training_set import build_training_set

        return build_training_set(features, spec, windows)

    def versions(self, training_set: pd.DataFrame, timestamp: str) -> dict[str, str]:
        from ml_platform.core.data_versions import versions_by_day
        from ml_platform.core.training_set import SPLIT

        return versions_by_day(training_set.drop(columns=SPLIT, errors="ignore"), timestamp)

    def tune(
        self, spec: ModelSpec, training_set: pd.DataFrame, scorer: Scorer
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        from ml_platform.core.training import tune
        from ml_platform.core.training_set import split_of

        return tune(spec, split_of(training_set), scorer)

    def train(
        self,
        spec: ModelSpec,
        training_set: pd.DataFrame,
        override: dict[str, Any] | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ) -> TrainingResult:
        from ml_platform.core.training import train
        from ml_platform.core.training_set import split_of

        return train(spec, split_of(training_set), override, extra_manifest=extra_manifest)

    def example_rows(self, training_set: pd.DataFrame) -> pd.DataFrame:
        return training_set

    def holdout(self, spec: ModelSpec, training_set: pd.DataFrame, candidate: Model, champion: Model | None) -> Holdout:
        from ml_platform.core.holdout import Holdout

        return Holdout.of_frame(training_set, candidate)  # evaluation scores the champion on these rows itself

    def predictions(
        self,
        spec: ModelSpec,
        features: pd.DataFrame,
        model: Model,
        version: str,
        by_partition: Callable[[pd.DataFrame], dict[str, pd.DataFrame]],
    ) -> BatchPredictions:
        import numpy as np

        scores = model.predict(features) if len(features) else np.empty(0)
        keep = _kept(spec, features.columns)
        frame = features[keep].assign(**_prediction_columns(model, scores, features.index), model_version=version)
        return BatchPredictions(by_partition(frame), len(frame), **_summary(model, frame))

    def with_predictions(
        self, spec: ModelSpec, features: pd.DataFrame, load_model: Callable[[], Model]
    ) -> pd.DataFrame:
        live = features.copy()
        if len(live):
            model = load_model()
            live["prediction"] = model.predict_labels(live) if spec.task == "multiclass" else model.predict(live)
        return live


class DaskEngine:
    """Lazy Dask DataFrames over the stored partitions, computed by the workers of the client `connect` returns
    (asked for when first needed); a partition it stores is a folder of part files written by the workers.
    Without `connect` it can load stored partitions but not compute."""

    name: ClassVar[str] = "dask"
    kind: ClassVar[str] = "dask"
    on_cluster: ClassVar[bool] = True

    def __init__(self, connect: Callable[[], Client] | None = None) -> None:
        self._connect = connect

    @property
    def client(self) -> Client:
        if self._connect is None:
            from ml_platform.core.training import TrainingError

            raise TrainingError("the Dask engine computes on a Dask client; none was given")
        return self._connect()

    @staticmethod
    def parts_of(output: Any, keys: Sequence[str | None]) -> dict[str | None, Any] | None:
        """A step's output as {partition key: Dask DataFrame} when it is this engine's frames (one frame, or a
        mapping of them), which the workers store; None for any other output."""
        if hasattr(output, "to_delayed"):
            return {keys[0]: output}
        if isinstance(output, Mapping) and any(hasattr(v, "to_delayed") for v in output.values()):
            return dict(output)
        return None

    @staticmethod
    def store(frame: dd.DataFrame, path: UPath) -> int:
        """A folder of part files, each written by the worker that holds it."""
        from ml_platform.core.dask_frames import write_partitions

        return write_partitions(frame, path)

    def load(self, paths: list[UPath], keys: list[str | None]) -> StoredPartitions:
        from ml_platform.core.dask_frames import StoredPartitions, read_partitions

        return read_partitions(paths, keys) if paths else StoredPartitions(None, [])

    def check_fits(self, *stored: StoredPartitions) -> None:
        from ml_platform.core.dask_cluster import check_partition_memory

        client = self.client
        for inputs in stored:
            check_partition_memory(client, inputs.sizes)

    def build_training_set(self, features: StoredPartitions, spec: ModelSpec, windows: Windows) -> TrainingSet:
        from ml_platform.core.dask_training import build_training_set_on_dask

        return build_training_set_on_dask(features, spec, windows)

    def versions(self, training_set: StoredPartitions, timestamp: str) -> dict[str, str]:
        from ml_platform.core.dask_training import versions_on_dask

        return versions_on_dask(training_set, timestamp)

    def tune(
        self, spec: ModelSpec, training_set: StoredPartitions, scorer: Scorer
    ) -> tuple[None, list[dict[str, Any]]]:
        return None, []  # tuning trains every trial in one process: the spec's rules refuse it with this engine

    def train(
        self,
        spec: ModelSpec,
        training_set: StoredPartitions,
        override: dict[str, Any] | None = None,
        extra_manifest: dict[str, Any] | None = None,
    ) -> TrainingResult:
        from ml_platform.core.dask_training import train_on_dask

        return train_on_dask(spec, training_set, self.client, extra_manifest=extra_manifest)

    def example_rows(self, training_set: StoredPartitions) -> pd.DataFrame:
        from ml_platform.core.dask_frames import read_file

        return read_file(training_set.files[0])  # the first stored file

    def holdout(
        self, spec: ModelSpec, training_set: StoredPartitions, candidate: Model, champion: Model | None
    ) -> Holdout:
        from ml_platform.core.dask_scoring import holdout_on_dask

        return holdout_on_dask(spec, training_set, candidate, champion)

    def predictions(
        self,
        spec: ModelSpec,
        features: StoredPartitions,
        model: Model,
        version: str,
        by_partition: Callable[[pd.DataFrame], dict[str, pd.DataFrame]],
    ) -> BatchPredictions:
        """Scored partition by partition on the workers, each stored partition's rows kept apart for them to
        store."""
        from ml_platform.core.dask_scoring import score_on_dask

        if features.frame is None:
            return BatchPredictions({}, 0)
        scored = score_on_dask(features, model, version, _kept(spec, features.frame.columns)).persist()
        parts = {key: features.of_key(scored, key) for key in dict.fromkeys(features.keys) if key is not None}
        rows = int(scored.map_partitions(len).sum().compute())
        if not rows:
            return BatchPredictions(parts, 0, **_summary(model, scored._meta))
        return BatchPredictions(parts, rows, **_summary(model, scored, compute=lambda value: value.compute()))

    def with_predictions(
        self, spec: ModelSpec, features: StoredPartitions, load_model: Callable[[], Model]
    ) -> pd.DataFrame:
        from ml_platform.core.dask_scoring import features_with_predictions

        return features_with_predictions(features, load_model())


LOCAL = LocalEngine()  # the engine of a stage called without one: outside the orchestrator (tests, tools)


def write_parquet(frame: pd.DataFrame, handle: Any) -> None:
    """A frame as one Parquet file without its index: what `DataFrame.to_parquet(index=False)` writes (pyarrow,
    snappy), minus pandas' per-call dispatch, which a backfill pays once per partition."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), handle, compression="snappy")


def engine_named(name: str, connect: Callable[[], Client] | None = None) -> Engine:
    """The engine of this name (`Engine.name`: what `training.engine` says, what an input's metadata names).
    `connect`: the client a Dask engine computes on, asked for when first needed (without it, it only loads)."""
    if name == DaskEngine.name:
        return DaskEngine(connect)
    if name == LocalEngine.name:
        return LocalEngine()
    raise ValueError(f"no engine named {name!r}: {LocalEngine.name} or {DaskEngine.name}")


def _kept(spec: ModelSpec, columns: Any) -> list[str]:
    """The columns batch predictions keep beside the scores: the key, timestamp and target, those present."""
    return [c for c in (spec.key, spec.timestamp, spec.target.name) if c and c in columns]


def _prediction_columns(model: Model, scores: np.ndarray, index: pd.Index) -> dict[str, pd.Series]:
    """The `prediction` (binary: P(positive); multiclass: the probabilities in class order; regression: the
    value) and, for a classifier, the `predicted_label` of scored rows."""
    import numpy as np
    import pandas as pd

    if model.task == "multiclass":
        prediction = pd.Series(
            [row.tolist() for row in np.atleast_2d(scores)] if len(scores) else [], index=index, dtype=object
        )
    else:
        prediction = pd.Series(scores, index=index, dtype=np.float64)
    if model.labels is None:
        return {"prediction": prediction}
    return {
        "prediction": prediction,
        "predicted_label": pd.Series(model.labels.predicted(scores), index=index, dtype=object),
    }


def _summary(model: Model, frame: Any, compute: Callable[[Any], Any] = lambda value: value) -> dict[str, Any]:
    """Binary and regression: the mean prediction (0.0 without rows); multiclass: how often each class is
    predicted. `compute` turns a lazy result into its value."""
    if model.task != "multiclass":
        mean = float(compute(frame["prediction"].mean()))  # NaN without rows
        return {"mean_prediction": mean if mean == mean else 0.0}
    counts = compute(frame["predicted_label"].value_counts())
    return {"predicted_classes": {str(k): int(v) for k, v in counts.items()}}
