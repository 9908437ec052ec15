"""What makes a logged model portable: the arguments of `mlflow.pyfunc.log_model` (or `save_model`) for a platform
model folder, so that another team's `mlflow.pyfunc.load_model`, `mlflow models serve` and `mlflow models
build-docker` load it in a clean environment, answering what the platform's endpoint answers.

- code: pyfunc_model.py (logged as code) plus `platform_scorer`, a package of the platform's own model.py,
  labels.py and row_predictor.py copied verbatim (`code_paths`; they import only numpy, pandas and LightGBM,
  and each other relatively), so the model's folder holds all the code it runs and nothing imports
  `ml_platform`;
- requirements: exact pins of what that code imports, at the versions installed here (the ones it was tested
  with);
- a signature: every feature by name (numeric as `long` when the training rows hold integers, else `double`;
  categorical as `string`, the text the endpoint takes), the answer's fields, and for a classifier its classes
  (multiclass: the `probabilities` fields; every classifier: the `classes` of the model's metadata);
- an input example: a few training rows, or with none given one row built from the model (the lowest value
  each numeric feature had in training, each categorical feature's first level);
- a `lightgbm` flavour beside `python_function`, naming the native booster file: MLflow's `build-docker` installs
  the system library LightGBM needs (libgomp1) only for a model with that flavour, and without it the image
  could not start. `mlflow.lightgbm.load_model` then gives the bare booster, which scores the encoded matrix
  (categorical levels as codes); rows go through the pyfunc flavour.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import warnings
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ml_platform.core.model import MODEL_FILE

if TYPE_CHECKING:
    from mlflow.models import ModelSignature
    from mlflow.models.model import ModelInfo

    from ml_platform.core.model import Model

ARTIFACT = "model"  # the artifact that is the model folder (pyfunc_model.ARTIFACT)
BUNDLE = "platform_scorer"  # the package name of the bundled code inside the model folder
BUNDLED_FILES = ("model.py", "labels.py", "row_predictor.py")
PYFUNC_FILE = Path(__file__).with_name("pyfunc_model.py")
# what the bundled code and pyfunc_model.py import (scipy: LightGBM imports it), pinned to the installed release
REQUIREMENTS = ("mlflow-skinny", "lightgbm", "numpy", "pandas", "scipy")
EXAMPLE_ROWS = 3


def requirements() -> list[str]:
    """`name==version` of each requirement as installed here (MLflow's full package stands in for the skinny one
    where only it is installed)."""
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            if name != "mlflow-skinny":
                raise
            pins.append(f"mlflow=={version('mlflow')}")
    return pins


def example_rows(model: Model, rows: pd.DataFrame | None = None) -> pd.DataFrame:
    """A few rows of the model's features as a caller sends them (categorical values as text): of `rows` (rows
    with no missing feature first), else one row built from the model itself."""
    encoder = model.encoder
    if rows is None:
        return _row_of_model(model)
    features = rows[encoder.names]
    complete = features.dropna()
    example = (complete if len(complete) else features).head(EXAMPLE_ROWS).copy()
    for name in encoder.categorical:
        example[name] = [None if pd.isna(value) else str(value) for value in example[name].astype(object)]
    return example.reset_index(drop=True)


def _row_of_model(model: Model) -> pd.DataFrame:
    """One row from what the booster recorded of its training data: each numeric feature's lowest value,
    each categorical feature's first level."""
    encoder = model.encoder
    infos = model.booster.dump_model(num_iteration=0).get("feature_infos", {})
    row: dict[str, Any] = {}
    for name in encoder.numeric:
        lowest = infos.get(name, {}).get("min_value")
        row[name] = float(lowest) if lowest is not None else np.nan
    for name in encoder.categorical:
        levels = encoder.levels.get(name) or []
        row[name] = levels[0] if levels else None
    return pd.DataFrame([row], columns=encoder.names)


def signature(model: Model, example: pd.DataFrame) -> ModelSignature:
    """The input features by name and type, and the fields of `model.answer` (their types as answered for
    `example`, so a multiclass model's `probabilities` name its classes)."""
    from mlflow.models import ModelSignature, infer_signature
    from mlflow.types import ColSpec, DataType, Schema, TensorSpec

    def numeric(values: pd.Series) -> DataType:
        if pd.api.types.is_bool_dtype(values.dtype):
            return DataType.boolean
        return DataType.long if pd.api.types.is_integer_dtype(values.dtype) else DataType.double

    encoder = model.encoder
    columns: list[ColSpec | TensorSpec] = [ColSpec(numeric(example[name]), name) for name in encoder.numeric]
    columns += [ColSpec(DataType.string, name) for name in encoder.categorical]
    inputs = Schema(columns)
    with warnings.catch_warnings():  # integer labels: MLflow's hint about integer inputs with missing values
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column")
        outputs = infer_signature(model_output=model.answer(example)).outputs
    return ModelSignature(inputs=inputs, outputs=outputs)


def metadata(model: Model) -> dict[str, Any]:
    """The model's task, and a classifier's classes in code order (binary: negative, positive)."""
    labels = model.labels
    return {"task": model.task, **(labels.to_manifest() if labels else {})}


def bundle(target: Path) -> Path:
    """The `platform_scorer` package (the bundled files and an empty `__init__.py`) written under `target`."""
    package = target / BUNDLE
    package.mkdir(parents=True)
    (package / "__init__.py").write_text('"""The platform\'s model code, bundled with a logged model."""\n')
    for name in BUNDLED_FILES:
        shutil.copyfile(Path(__file__).with_name(name), package / name)
    return package


def log_model(**arguments: Any) -> ModelInfo:
    """`mlflow.pyfunc.log_model(name="model", **arguments)` (`log_arguments`' arguments) with the `lightgbm`
    flavour added to the logged MLmodel."""
    from mlflow.models import Model as MlflowModel

    logged: ModelInfo = MlflowModel.log(artifact_path=None, flavor=_PyfuncWithLightgbm, name="model", **arguments)
    return logged


class _PyfuncWithLightgbm:
    """`mlflow.pyfunc` as `mlflow.models.Model.log` calls a flavour module, adding the `lightgbm` flavour."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(path: str, mlflow_model: Any, **arguments: Any) -> None:
        import lightgbm
        import mlflow.pyfunc

        mlflow.pyfunc.save_model(path, mlflow_model=mlflow_model, **arguments)
        booster = next((Path(path) / "artifacts").rglob(MODEL_FILE)).relative_to(path)
        mlflow_model.add_flavor(
            "lightgbm", lgb_version=lightgbm.__version__, data=booster.as_posix(), model_class="lightgbm.basic.Booster"
        )
        mlflow_model.save(str(Path(path) / "MLmodel"))


@contextlib.contextmanager
def log_arguments(folder: Path, model: Model, rows: pd.DataFrame | None = None) -> Iterator[dict[str, Any]]:
    """The keyword arguments of `mlflow.pyfunc.log_model` / `save_model` for the model saved in `folder`
    (`model`, loaded from it), valid inside the `with` block (the bundled code sits in a scratch folder).
    `rows`: a few of its training rows (any columns), for the input example and the numeric types."""
    example = example_rows(model, rows)
    with tempfile.TemporaryDirectory() as scratch:
        code = bundle(Path(scratch))
        # MLflow runs pyfunc_model.py while it logs it: its import of the bundle resolves to this copy
        sys.path.insert(0, scratch)
        try:
            yield {
                "python_model": str(PYFUNC_FILE),
                "artifacts": {ARTIFACT: str(folder)},
                "code_paths": [str(code)],
                "pip_requirements": requirements(),
                "signature": signature(model, example),
                "input_example": example,
                "metadata": metadata(model),
            }
        finally:
            with contextlib.suppress(ValueError):
                sys.path.remove(scratch)
