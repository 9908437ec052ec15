"""Scoring on a Dask cluster (`training.engine: dask`): the held-out days for evaluation and the daily batch
predictions are scored partition by partition on the workers.

Evaluation needs every held-out row's prediction, target and slice columns (a few numbers per row, gathered
here), but the features of only a bounded sample: TreeSHAP and the smoke rows read `SHAP_SAMPLE_ROWS` held-out
rows, and the drift reference and the naive baseline a uniform sample of `REFERENCE_ROWS` training rows.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ml_platform.core.dask_frames import StoredPartitions, per_partition, sample
from ml_platform.core.dask_training import split_summary
from ml_platform.core.evaluation import SHAP_SAMPLE_ROWS
from ml_platform.core.features import concat_partitions
from ml_platform.core.holdout import Holdout, data_section
from ml_platform.core.training_set import SPLIT
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    import dask.dataframe as dd

    from ml_platform.core.model import Model

REFERENCE_ROWS = 100_000
PREDICTION, CHAMPION = "__prediction__", "__champion__"


def holdout_on_dask(
    spec: ModelSpec, stored: StoredPartitions, candidate: Model, champion: Model | None = None
) -> Holdout:
    """The held-out days scored on the workers by the candidate (and the champion), with the samples
    evaluation reads features from."""
    frame, seed = stored.frame, spec.training.seed
    summary = split_summary(frame, spec)
    columns = list(
        dict.fromkeys(
            [
                spec.timestamp,
                spec.target.name,
                *spec.gates.slices,
                *([spec.gates.fairness.group] if spec.gates.fairness else []),
            ]
        )
    )
    test = frame[frame[SPLIT] == "test"]
    scored = concat_partitions(list(per_partition(test, _scored, candidate, champion, columns)))
    scored = scored.reset_index(drop=True)
    return Holdout(
        train=sample(frame[frame[SPLIT] == "train"], REFERENCE_ROWS, summary["train"]["rows"], seed),
        test=scored[columns],
        explain=sample(test, SHAP_SAMPLE_ROWS, summary["test"]["rows"], seed),
        predictions=_column(scored, PREDICTION),
        champion_predictions=_column(scored, CHAMPION) if champion is not None else None,
        data=data_section(summary, candidate),
    )


def _scored(part: pd.DataFrame, candidate: Model, champion: Model | None, columns: list[str]) -> pd.DataFrame:
    out = part[columns].reset_index(drop=True)
    for name, model in ((PREDICTION, candidate), (CHAMPION, champion)):
        if model is not None and len(part):
            out = out.join(_as_columns(name, model.predict(part)))
        elif model is not None:
            out[name] = pd.Series(dtype=np.float64)
    return out


def _as_columns(name: str, scores: np.ndarray) -> pd.DataFrame:
    if scores.ndim == 1:
        return pd.DataFrame({name: scores})
    return pd.DataFrame(scores, columns=[f"{name}{i}" for i in range(scores.shape[1])])


def _column(scored: pd.DataFrame, name: str) -> np.ndarray:
    if name in scored.columns:
        return scored[name].to_numpy(dtype=np.float64)
    return scored[[c for c in scored.columns if c.startswith(name)]].to_numpy(dtype=np.float64)


def score_on_dask(stored: StoredPartitions, model: Model, version: str, keep: list[str]) -> dd.DataFrame:
    """The `predictions` rows of stored feature partitions, scored on the workers: a lazy Dask DataFrame (the
    key, timestamp and target columns kept, the prediction, a classifier's predicted label and the model version
    beside them)."""
    frame = stored.frame
    columns = {"prediction": pd.Series(dtype=object if model.task == "multiclass" else float)}
    if model.labels is not None:
        columns["predicted_label"] = pd.Series(dtype=object)
    meta = frame._meta[keep].assign(**columns, model_version=pd.Series(dtype=object))
    scored: dd.DataFrame = frame.map_partitions(_predictions, model, version, keep, meta=meta)
    return scored


def _predictions(part: pd.DataFrame, model: Model, version: str, keep: list[str]) -> pd.DataFrame:
    scores = model.predict(part) if len(part) else np.empty(0)
    out = part[keep].reset_index(drop=True)
    out["prediction"] = pd.Series(
        [p.tolist() for p in scores] if model.task == "multiclass" else scores,
        dtype=object if model.task == "multiclass" else float,
    )
    if model.labels is not None:
        out["predicted_label"] = pd.Series(model.labels.predicted(scores), dtype=object)
    return out.assign(model_version=version)


def features_with_predictions(stored: StoredPartitions, model: Model) -> pd.DataFrame:
    """Stored feature partitions with the model's `prediction` column (multiclass: the predicted label), scored
    on the workers and gathered: drift's batch fallback for a day without traffic."""
    if stored.frame is None:
        return pd.DataFrame()
    parts = per_partition(stored.frame, _with_prediction, model)
    return concat_partitions(parts).reset_index(drop=True)


def _with_prediction(part: pd.DataFrame, model: Model) -> pd.DataFrame:
    if not len(part):
        return part
    return part.assign(prediction=model.predict_labels(part) if model.task == "multiclass" else model.predict(part))
