"""A logged version is portable (pyfunc_flavour): its signature, input example, pinned requirements and bundled
code, read back from a real local MLflow store; and a version logged the way it was before still loads.

That it loads and answers in a clean environment without the platform is tested in
ml_platform_tests/serving/test_portable_model.py."""

from __future__ import annotations

import ast
import json
from importlib.metadata import version
from pathlib import Path

import mlflow
import mlflow.lightgbm
import numpy as np
import yaml

from ml_platform.core.model import Model
from ml_platform.core.pyfunc_flavour import BUNDLE, BUNDLED_FILES, example_rows, requirements
from ml_platform.core.training_run import log_model_files

CORE = Path(__file__).resolve().parents[2] / "ml_platform" / "core"
# pyfunc_model.py as versions were logged before their code was bundled (it imports ml_platform)
BEFORE = Path(__file__).with_name("pyfunc_model_before_code_paths.txt")


ALLOWED = {"__future__", "collections", "ctypes", "dataclasses", "functools", "json", "math", "pathlib", "threading"}
ALLOWED |= {"typing", "weakref", "lightgbm", "numpy", "pandas", "mlflow", BUNDLE}


def _runtime_imports(tree: ast.AST) -> set[str]:
    """The top-level names a module imports when it runs (not under `if TYPE_CHECKING:`); relative imports
    stay within the bundle."""
    found: set[str] = set()
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            node = ast.Module(body=node.orelse, type_ignores=[])
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(BUNDLE if node.level else (node.module or "").split(".")[0])
        else:
            found |= _runtime_imports(node)
    return found


def _log(store, model, rows=None) -> Path:
    _, experiment = store
    with mlflow.start_run(experiment_id=experiment):
        model_uri, _ = log_model_files(model, rows=rows)
    return Path(mlflow.artifacts.download_artifacts(model_uri))


def test_a_logged_version_carries_its_signature_example_requirements_and_code(spec, model, split, store):
    folder = _log(store, model, split.valid)
    logged = yaml.safe_load((folder / "MLmodel").read_text())
    signature = mlflow.models.Model.load(str(folder)).signature
    inputs = {column["name"]: column["type"] for column in signature.inputs.to_dict()}
    assert list(inputs) == model.encoder.names
    assert {inputs[name] for name in spec.features.categorical} == {"string"}
    # numeric as the training rows hold them: this window's numeric features are all floats
    assert {inputs[name] for name in model.encoder.numeric} == {"double"}
    assert [column["name"] for column in signature.outputs.to_dict()] == ["prediction", "label"]
    assert logged["metadata"] == {"task": "binary", "classes": [0, 1], "positive": 1}

    # pinned to what is installed here, the versions it was tested with
    pins = (folder / "requirements.txt").read_text().split()
    assert pins == requirements() and f"lightgbm=={version('lightgbm')}" in pins
    assert {pin.split("==")[0] for pin in pins} >= {"mlflow-skinny", "lightgbm", "numpy", "pandas"}

    # the code: pyfunc_model.py and the platform's own scorer files, verbatim, importing nothing of the platform
    assert logged["flavors"]["python_function"]["code"] == "code"
    bundled = folder / "code" / BUNDLE
    for name in BUNDLED_FILES:
        assert (bundled / name).read_bytes() == (CORE / name).read_bytes()
    for path in [*bundled.glob("*.py"), folder / "pyfunc_model.py"]:
        assert _runtime_imports(ast.parse(path.read_text())) <= ALLOWED, path

    # the example: real training rows, categorical values as text; it scores as the platform scores
    example = mlflow.models.Model.load(str(folder)).load_input_example(str(folder))
    assert list(example.columns) == model.encoder.names and 0 < len(example) <= 3
    assert example[spec.features.categorical].map(lambda v: isinstance(v, str)).all().all()
    serving = json.loads((folder / "serving_input_example.json").read_text())
    assert serving["dataframe_split"]["columns"] == model.encoder.names
    pyfunc = mlflow.pyfunc.load_model(str(folder))
    answered = pyfunc.predict(example)
    assert np.array_equal(answered["prediction"].to_numpy(), model.predict(example))
    assert answered["label"].tolist() == model.predict_labels(example)

    # the lightgbm flavour (what makes `mlflow models build-docker` install libgomp1): the native booster file,
    # loaded without unpickling, scoring the encoded matrix exactly as the model does
    lightgbm_flavour = logged["flavors"]["lightgbm"]
    assert lightgbm_flavour["model_class"] == "lightgbm.basic.Booster"
    assert (folder / lightgbm_flavour["data"]).read_bytes() == model.booster.model_to_string().encode()
    booster = mlflow.lightgbm.load_model(str(folder))
    assert np.array_equal(booster.predict(model.encoder.transform(example)), model.predict(example))


def test_without_training_rows_the_example_is_built_from_the_model(model, store):
    folder = _log(store, model)
    example = mlflow.models.Model.load(str(folder)).load_input_example(str(folder))
    assert len(example) == 1 and list(example.columns) == model.encoder.names
    for name in model.encoder.categorical:
        assert example[name][0] == model.encoder.levels[name][0]
    answered = mlflow.pyfunc.load_model(str(folder)).predict(example_rows(model))
    assert np.array_equal(answered["prediction"].to_numpy(), model.predict(example_rows(model)))


def test_integer_training_columns_are_declared_long(model, split, store):
    rows = split.valid.copy()
    rows["sched_dep_time"] = rows["sched_dep_time"].fillna(0).astype("int64")
    folder = _log(store, model, rows)
    inputs = {c["name"]: c["type"] for c in mlflow.models.Model.load(str(folder)).signature.inputs.to_dict()}
    assert inputs["sched_dep_time"] == "long" and inputs["distance"] == "double"


def test_a_version_logged_before_its_code_was_bundled_still_loads(model, split, store, tmp_path):
    """Logged the old way: pyfunc_model.py importing `ml_platform`, no requirements, no signature, no example."""
    _, experiment = store
    folder = model.save(tmp_path / "model_files")
    code = tmp_path / "pyfunc_model.py"
    code.write_text(BEFORE.read_text())
    with mlflow.start_run(experiment_id=experiment):
        info = mlflow.pyfunc.log_model(
            name="model", python_model=str(code), artifacts={"model": str(folder)}, pip_requirements=[]
        )
    rows = split.test.head(50)  # as before: any frame, categorical columns as pandas categories
    pyfunc = mlflow.pyfunc.load_model(info.model_uri)
    assert pyfunc.metadata.signature is None
    answered = pyfunc.predict(rows)
    assert np.array_equal(answered["prediction"].to_numpy(), Model.load(folder).predict(rows))
    assert answered["label"].tolist() == model.predict_labels(rows)
