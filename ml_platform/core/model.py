"""The model artifact and its scorer: LightGBM's native text file plus a JSON manifest. Nothing is pickled.

Categorical features are encoded with the levels learned at training, which travel in the manifest: a level
never seen in training becomes "missing" (LightGBM sends it down the missing-value branch), never an error,
and a row scores the same alone as inside any batch because the encoding does not depend on the batch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, cast

import lightgbm as lgb
import numpy as np
import numpy.typing as npt
import pandas as pd

# Relative, and only to these two siblings: the three files are also bundled, as one package, into every logged
# MLflow model (see pyfunc_flavour), which loads them without the platform installed.
from .labels import Labels
from .row_predictor import RowPredictor

MODEL_FILE = "model.txt"
MANIFEST_FILE = "manifest.json"


@dataclass(frozen=True)
class FeatureEncoder:
    """Turns a frame into the float matrix the booster was trained on."""

    numeric: list[str]
    categorical: list[str]
    levels: dict[str, list[str]] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [*self.numeric, *self.categorical]

    @property
    def categorical_columns(self) -> list[int]:
        """The matrix columns LightGBM treats as categorical (they follow the numeric ones)."""
        return list(range(len(self.numeric), len(self.names)))

    @classmethod
    def fit(cls, frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> FeatureEncoder:
        levels = {name: sorted(frame[name].dropna().astype(str).unique().tolist()) for name in categorical}
        return cls(list(numeric), list(categorical), levels)

    def transform(self, frame: pd.DataFrame, order: str = "C") -> np.ndarray:
        """The (rows, features) float matrix: row-major (`order="C"`, what training builds its Dataset from) or
        column-major (`"F"`, no extra copy: LightGBM predicts from either layout with the same numbers)."""
        columns = self._columns(frame)
        return columns.T if order == "F" else np.ascontiguousarray(columns.T)

    def _columns(self, frame: pd.DataFrame) -> np.ndarray:
        """One contiguous row of values per feature (each column is written in one pass)."""
        columns = np.empty((len(self.names), len(frame)), dtype=np.float64)
        try:  # the usual case: every numeric column already is numeric
            for i, name in enumerate(self.numeric):
                columns[i] = frame[name].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError):
            for i, name in enumerate(self.numeric):
                columns[i] = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        for j, name in enumerate(self.categorical, start=len(self.numeric)):
            columns[j] = self._encode(name, frame[name])
        return columns

    def _encode(self, name: str, values: pd.Series) -> np.ndarray:
        """Codes of one categorical column, NaN for missing or never-seen levels. Only the column's distinct
        values are looked up (as text), so the per-row cost is one hash pass, or none for a pandas Categorical."""
        if isinstance(values.dtype, pd.CategoricalDtype):
            row_codes, distinct = values.cat.codes.to_numpy(), values.cat.categories
        else:
            row_codes, distinct = pd.factorize(values, use_na_sentinel=True)
        lookup = self._index[name].get_indexer(pd.Index(distinct).astype(str)).astype(np.float64)
        lookup[lookup < 0] = np.nan
        return np.append(lookup, np.nan)[row_codes]  # row code -1 (missing) picks the appended NaN

    @cached_property
    def _index(self) -> dict[str, pd.Index]:
        return {name: pd.Index(levels) for name, levels in self.levels.items()}

    @cached_property
    def _codes(self) -> dict[str, dict[str, float]]:
        return {name: {level: float(i) for i, level in enumerate(levels)} for name, levels in self.levels.items()}

    def transform_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """The same matrix as `transform`, straight from dicts (no DataFrame): the fast path for serving.

        Values must already be validated: numbers (or None) for numeric features, text (or None) for
        categorical ones.
        """
        matrix = np.empty((len(records), len(self.names)), dtype=np.float64)
        numeric, codes, offset = self.numeric, self._codes, len(self.numeric)
        for r, record in enumerate(records):
            row = matrix[r]
            for i, name in enumerate(numeric):
                value = record.get(name)
                row[i] = math.nan if value is None else value
            for j, name in enumerate(self.categorical, start=offset):
                value = record.get(name)
                row[j] = math.nan if value is None else codes[name].get(str(value), math.nan)
        return matrix

    def unseen(self, frame: pd.DataFrame) -> dict[str, int]:
        """How many non-missing values of each categorical feature were never seen in training."""
        counts = {}
        for name in self.categorical:
            values = frame[name].dropna().astype(str)
            counts[name] = int((~values.isin(self.levels[name])).sum())
        return counts


def _dense(scores: Any) -> npt.NDArray[np.float64]:
    """Booster.predict's answer for a dense matrix: its stubs also allow the sparse and list answers of
    sparse input and pred_contrib, which the platform never asks for here."""
    return cast("npt.NDArray[np.float64]", scores)


FEW_ROWS = 16  # up to this many rows, one single-row call each beats Booster.predict's set-up


def _threads(rows: int) -> int:
    """One thread for small inputs (no OpenMP start-up per request); all cores for batches."""
    return 1 if rows < 2000 else 0


@dataclass
class Model:
    """A trained booster with everything needed to score raw feature rows."""

    booster: lgb.Booster
    encoder: FeatureEncoder
    manifest: dict[str, Any]

    @property
    def task(self) -> str:
        task: str = self.manifest["task"]
        return task

    @property
    def classes(self) -> list[Any]:
        classes: list[Any] = self.manifest.get("classes") or []
        return classes

    @cached_property
    def labels(self) -> Labels | None:
        """A classifier's labels (code ↔ class, from the manifest); None for regression."""
        return Labels.of_manifest(self.manifest)

    def _classifier_labels(self) -> Labels:
        """The labels, for what only a classifier has."""
        if self.labels is None:
            raise ValueError(f"a {self.task} model has no classes")
        return self.labels

    def predict_labels(self, frame: pd.DataFrame) -> list[Any]:
        """The predicted class of each row (binary at probability 0.5), as Python scalars."""
        return self._classifier_labels().predicted(self.predict(frame))

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Binary: probability of the positive class; multiclass: one column per class; regression: value."""
        missing = [name for name in self.encoder.names if name not in frame.columns]
        if missing:
            raise KeyError(f"features missing from the rows to score: {', '.join(missing)}")
        return _dense(self.booster.predict(self.encoder.transform(frame, order="F"), num_threads=_threads(len(frame))))

    def answer(self, frame: pd.DataFrame) -> np.ndarray | pd.DataFrame:
        """What the MLflow pyfunc answers for `frame`. A regressor: the ndarray of values. A classifier: what the
        endpoint's v1 route answers, one row per input row: `prediction` (binary: the positive class's
        probability; multiclass: the list of probabilities in class order), `label` (the predicted class) and,
        for multiclass, `probabilities` (a dict by class name)."""
        outputs = self.predict(frame)
        labels = self.labels
        if labels is None:
            return outputs
        fields = labels.response(outputs)
        answer = {"prediction": outputs.tolist(), "label": fields["labels"]}
        if "probabilities" in fields:
            answer["probabilities"] = fields["probabilities"]
        return pd.DataFrame(answer, index=frame.index)

    def predict_records(self, records: list[dict[str, Any]]) -> np.ndarray:
        """`predict` for validated dict rows (the endpoint's path: no DataFrame, one thread per request); the
        same numbers as `predict` on the same rows. Missing keys score as missing values. A few rows go through
        LightGBM's single-row API (no per-call set-up), more through Booster.predict."""
        matrix = self.encoder.transform_records(records)
        if len(records) <= FEW_ROWS:
            return self._row_predictor.predict(matrix)
        return _dense(self.booster.predict(matrix, num_threads=1))

    @cached_property
    def _row_predictor(self) -> RowPredictor:
        return RowPredictor(self.booster, len(self.encoder.names))

    def contributions(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per-row feature contributions (TreeSHAP, LightGBM's pred_contrib); the last column is the bias.
        Multiclass: the contributions to each row's predicted (top) class."""
        columns = [*self.encoder.names, "(bias)"]
        if len(frame) == 0:  # LightGBM refuses an empty matrix; no rows have no contributions
            return pd.DataFrame(columns=columns, index=frame.index, dtype=np.float64)
        values, _ = self._contributions(self.encoder.transform(frame), _threads(len(frame)))
        return pd.DataFrame(values, columns=columns, index=frame.index)

    def explained(self, frame: pd.DataFrame) -> list[Any]:
        """The class each row of `contributions(frame)` explains: multiclass, the predicted class; binary, the
        positive class (the contributions add up to its log-odds); regression, None."""
        if len(frame) == 0:
            return []
        return self._contributions(self.encoder.transform(frame), _threads(len(frame)))[1]

    def explain_records(self, records: list[dict[str, Any]], top: int = 5) -> list[list[dict[str, Any]]]:
        """Each row's `top` features by absolute contribution (`{"feature", "contribution"}`, largest first)."""
        return self.explanations(records, top)[0]

    def explanations(self, records: list[dict[str, Any]], top: int = 5) -> tuple[list[list[dict[str, Any]]], list[Any]]:
        """The endpoint's explanations, and the class each row's explanation is about (see `explained`). They
        are `contributions` of the same rows, so online and offline agree, for multiclass too."""
        if not records:
            return [], []
        values, explained = self._contributions(self.encoder.transform_records(records), 1)
        names = self.encoder.names
        explanations = []
        for row in values:
            features = row[: len(names)]
            order = np.argsort(-np.abs(features))[:top]
            explanations.append([{"feature": names[i], "contribution": float(features[i])} for i in order])
        return explanations, explained

    def _contributions(self, matrix: np.ndarray, threads: int) -> tuple[np.ndarray, list[Any]]:
        """TreeSHAP of encoded rows: one row of feature contributions plus the bias per input row, and the class
        each row explains. LightGBM gives a multiclass model one such block per class; the block of the row's
        top class is the one kept. A binary model's block explains the positive class."""
        values = np.atleast_2d(self.booster.predict(matrix, pred_contrib=True, num_threads=threads))
        labels = self.labels
        if self.task == "multiclass":
            blocks = values.reshape(len(matrix), len(self.classes), len(self.encoder.names) + 1)
            top = _dense(self.booster.predict(matrix, num_threads=threads)).argmax(axis=1)
            classes = self._classifier_labels().classes
            return blocks[np.arange(len(matrix)), top], [classes[i] for i in top]
        return values, [labels.positive] * len(matrix) if labels else [None] * len(matrix)

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE))
        manifest = {
            **self.manifest,
            "features": {
                "numeric": self.encoder.numeric,
                "categorical": self.encoder.categorical,
                "levels": self.encoder.levels,
            },
        }
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Model:
        """Load from the native text model and the JSON manifest (no unpickling)."""
        folder = Path(folder)
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        features = manifest["features"]
        encoder = FeatureEncoder(features["numeric"], features["categorical"], features["levels"])
        booster = lgb.Booster(model_file=str(folder / MODEL_FILE))
        return cls(booster=booster, encoder=encoder, manifest=manifest)
