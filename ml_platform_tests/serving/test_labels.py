"""A classifier's labels on the wire: the v1 answer, the v2 `label` output, the OpenAPI document, the model
description, MLflow's pyfunc and the deploy smoke test, on real small LightGBM models served over real HTTP.

What clients read before labels existed must not move: for a 0/1 model the four old keys come first and
`predictions` is byte for byte the same text."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import lightgbm as lgb
import numpy as np
import orjson
import pandas as pd
import pytest
import requests

from ml_platform.core.deploy import smoke_test
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform.core.pyfunc_flavour import log_arguments

AIRPORTS = ["JFK", "EWR", "LGA"]  # declared order, not sorted: code 0 is JFK
OLD_KEYS = ["predictions", "model", "version", "request_id"]


def _frame(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "speed": rng.uniform(0, 10, size=n),
            "shape": rng.choice(["round", "square", "flat"], size=n).astype(object),
        }
    )
    frame.loc[rng.choice(n, n // 15, replace=False), "speed"] = np.nan
    frame.loc[rng.choice(n, n // 15, replace=False), "shape"] = None
    return frame


def _score(frame: pd.DataFrame) -> pd.Series:
    return frame["size"] + 0.3 * frame["speed"].fillna(5) + (frame["shape"] == "round") * 1.5


def _save(folder, task: str, codes: np.ndarray, frame: pd.DataFrame, manifest: dict) -> Model:
    """A real LightGBM model trained on integer codes, with the manifest that names its classes."""
    encoder = FeatureEncoder.fit(frame, ["size", "speed"], ["shape"])
    objective = {"objective": "multiclass", "num_class": 3} if task == "multiclass" else {"objective": task}
    data = lgb.Dataset(encoder.transform(frame), codes, feature_name=encoder.names, categorical_feature=[2])
    booster = lgb.train(
        {**objective, "num_leaves": 7, "min_data_in_leaf": 10, "verbose": -1, "seed": 0, "deterministic": True},
        data,
        num_boost_round=20,
    )
    model = Model(booster, encoder, {"task": task, "target": "outcome", **manifest})
    model.save(folder)
    return Model.load(folder)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Four saved models: multiclass on airport names, binary 0/1 (an old manifest: no `positive`), binary
    "no"/"yes" (positive "yes"), and regression; plus rows to score."""
    root = tmp_path_factory.mktemp("label_models")
    frame = _frame(400, 7)
    score = _score(frame) + np.random.default_rng(1).normal(scale=0.4, size=len(frame))
    codes = np.digitize(score, np.quantile(score, [1 / 3, 2 / 3]))
    high = (score > score.median()).astype(int).to_numpy()
    built = {
        "multiclass": _save(root / "multi", "multiclass", codes, frame, {"classes": AIRPORTS}),
        "binary_01": _save(root / "b01", "binary", high, frame, {"classes": [0, 1]}),
        "yes_no": _save(root / "yn", "binary", high, frame, {"classes": ["no", "yes"], "positive": "yes"}),
        "regression": _save(root / "reg", "regression", score.to_numpy(), frame, {"classes": None}),
    }
    return root, built, _frame(60, 11)


def _folder(models, name: str) -> str:
    return str(models[0] / {"multiclass": "multi", "binary_01": "b01", "yes_no": "yn", "regression": "reg"}[name])


def _records(frame: pd.DataFrame) -> list[dict]:
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


def _predict(server, rows: list[dict], **extra) -> requests.Response:
    response = requests.post(server.predict_url(), json={"instances": rows, **extra}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def _validator(server, name: str) -> jsonschema.Draft202012Validator:
    doc = requests.get(f"{server.url}/openapi.json", timeout=5).json()
    return jsonschema.Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


def test_multiclass_answers_labels_probabilities_and_the_explained_class(models, start_server):
    model, rows = models[1]["multiclass"], models[2]
    server = start_server("--model-dir", _folder(models, "multiclass"))
    plain = _predict(server, _records(rows)).json()
    assert list(plain) == [*OLD_KEYS, "labels", "probabilities"]
    assert plain["predictions"] == model.predict(rows).tolist()  # unchanged: class order, unnamed
    assert plain["labels"] == model.predict_labels(rows)
    assert set(plain["labels"]) == set(AIRPORTS), "every class is predicted for some row"
    for row, probabilities, label in zip(plain["predictions"], plain["probabilities"], plain["labels"], strict=True):
        assert list(probabilities) == AIRPORTS and list(probabilities.values()) == row
        assert abs(sum(row) - 1) < 1e-9 and max(probabilities, key=probabilities.get) == label
    explained = _predict(server, _records(rows), explain=True).json()
    assert list(explained) == [*OLD_KEYS, "labels", "probabilities", "explanations", "explained_class"]
    assert explained["explained_class"] == explained["labels"] == plain["labels"]
    assert explained["explained_class"] == model.explained(rows)
    for body in (plain, explained):
        assert _validator(server, "PredictResponse").is_valid(body)
    assert not _validator(server, "PredictResponse").is_valid({**plain, "labels": None})
    info = requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()
    assert info["classes"] == AIRPORTS and "positive" not in info
    assert _validator(server, "ModelInfo").is_valid(info)


def test_multiclass_v2_metadata_and_infer_carry_a_label(models, start_server):
    model, rows = models[1]["multiclass"], models[2].dropna().head(7)
    server = start_server("--model-dir", _folder(models, "multiclass"))
    metadata = requests.get(f"{server.url}/v2/models/flight_delay", timeout=5).json()
    assert metadata["outputs"] == [
        {"name": "predict", "datatype": "FP64", "shape": [-1, 3]},
        {"name": "label", "datatype": "BYTES", "shape": [-1]},
    ]
    body = {
        "inputs": [
            {"name": "size", "datatype": "FP64", "shape": [7], "data": rows["size"].tolist()},
            {"name": "speed", "datatype": "FP64", "shape": [7], "data": rows["speed"].tolist()},
            {"name": "shape", "datatype": "BYTES", "shape": [7], "data": rows["shape"].tolist()},
        ]
    }
    url = f"{server.url}/v2/models/flight_delay/infer"
    both = requests.post(url, json=body, timeout=10).json()["outputs"]
    assert [o["name"] for o in both] == ["predict", "label"]
    assert both[0]["shape"] == [7, 3] and both[0]["data"] == model.predict(rows).ravel().tolist()
    assert both[1] == {"name": "label", "datatype": "BYTES", "shape": [7], "data": model.predict_labels(rows)}
    only_predict = requests.post(url, json={**body, "outputs": [{"name": "predict"}]}, timeout=10).json()
    assert only_predict["outputs"] == both[:1]
    only_label = requests.post(url, json={**body, "outputs": [{"name": "label"}]}, timeout=10).json()
    assert only_label["outputs"] == both[1:]
    unknown = requests.post(url, json={**body, "outputs": [{"name": "probabilities"}]}, timeout=10)
    assert unknown.status_code == 422 and unknown.json()["error"].startswith("outputs[0].name: ")


def test_pyfunc_answers_what_the_v1_route_answers(models, start_server, tmp_path):
    import mlflow

    rows = models[2]
    server = start_server("--model-dir", _folder(models, "multiclass"))
    v1 = _predict(server, _records(rows)).json()
    path = tmp_path / "pyfunc"
    with log_arguments(Path(_folder(models, "multiclass")), models[1]["multiclass"], rows) as arguments:
        mlflow.pyfunc.save_model(str(path), **arguments)
    answered = mlflow.pyfunc.load_model(str(path)).predict(rows)
    assert list(answered.columns) == ["prediction", "label", "probabilities"]
    assert answered["prediction"].tolist() == v1["predictions"]
    assert answered["label"].tolist() == v1["labels"]
    assert answered["probabilities"].tolist() == v1["probabilities"]
    for name in ("yes_no", "regression"):
        with log_arguments(Path(_folder(models, name)), models[1][name], rows) as arguments:
            mlflow.pyfunc.save_model(str(tmp_path / name), **arguments)
    binary = mlflow.pyfunc.load_model(str(tmp_path / "yes_no")).predict(rows)
    assert list(binary.columns) == ["prediction", "label"]
    assert binary["prediction"].tolist() == models[1]["yes_no"].predict(rows).tolist()
    regression = mlflow.pyfunc.load_model(str(tmp_path / "regression")).predict(rows)
    assert isinstance(regression, np.ndarray) and np.array_equal(regression, models[1]["regression"].predict(rows))


def test_a_0_1_model_keeps_its_old_answer_byte_for_byte_and_adds_labels(models, start_server):
    model, rows = models[1]["binary_01"], models[2]
    server = start_server("--model-dir", _folder(models, "binary_01"))
    response = _predict(server, _records(rows))
    body = response.json()
    assert list(body) == [*OLD_KEYS, "labels"]
    before = orjson.dumps(
        {
            "predictions": model.predict(rows).tolist(),
            "model": "flight_delay",
            "version": body["version"],
            "request_id": body["request_id"],
        }
    )
    assert response.content.startswith(before[:-1] + b',"labels":[')
    assert body["labels"] == [int(p >= 0.5) for p in body["predictions"]]
    assert all(type(label) is int for label in body["labels"]) and set(body["labels"]) == {0, 1}
    info = requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()
    assert (info["classes"], info["positive"]) == ([0, 1], 1)


def test_a_yes_no_model_answers_yes_and_no(models, start_server):
    model, rows = models[1]["yes_no"], models[2]
    server = start_server("--model-dir", _folder(models, "yes_no"))
    body = _predict(server, _records(rows), explain=True).json()
    assert list(body) == [*OLD_KEYS, "labels", "explanations", "explained_class"]
    assert body["predictions"] == model.predict(rows).tolist()  # P(yes)
    assert body["labels"] == ["yes" if p >= 0.5 else "no" for p in body["predictions"]]
    assert set(body["labels"]) == {"yes", "no"}
    assert body["explained_class"] == ["yes"] * len(rows)  # the contributions explain P(yes)
    assert _validator(server, "PredictResponse").is_valid(body)
    info = requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()
    assert (info["classes"], info["positive"]) == (["no", "yes"], "yes")


def test_a_regressor_answers_nothing_new(models, start_server):
    rows = models[2].head(5)
    server = start_server("--model-dir", _folder(models, "regression"))
    assert list(_predict(server, _records(rows), explain=True).json()) == [*OLD_KEYS, "explanations"]
    info = requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()
    assert "classes" not in info and "positive" not in info
    metadata = requests.get(f"{server.url}/v2/models/flight_delay", timeout=5).json()
    assert [o["name"] for o in metadata["outputs"]] == ["predict"]


def test_the_smoke_test_fails_on_a_label_the_endpoint_answers_differently(models, start_server):
    model, rows = models[1]["yes_no"], models[2].head(12)
    server = start_server("--model-dir", _folder(models, "yes_no"))
    records, expected = _records(rows), model.predict(rows)
    labels = model.labels.predicted(expected)
    assert smoke_test(server.url, "flight_delay", records, expected, {}, expected_labels=labels).passed
    assert smoke_test(server.url, "flight_delay", records, expected, {}).passed  # not asked: not checked
    wrong = [*labels[:3], "no" if labels[3] == "yes" else "yes", *labels[4:]]
    failed = smoke_test(server.url, "flight_delay", records, expected, {}, expected_labels=wrong)
    assert not failed.passed and failed.max_abs_diff <= 1e-9
    assert failed.label_mismatches == [{"row": 3, "expected": wrong[3], "got": labels[3]}]
    assert "row 3" in failed.problem and repr(wrong[3]) in failed.problem


def test_hostile_explain_on_many_multiclass_rows_and_empty_instances(models, start_server):
    model, rows = models[1]["multiclass"], _frame(1000, 3)
    server = start_server("--model-dir", _folder(models, "multiclass"))
    body = _predict(server, _records(rows), explain=True).json()
    assert len(body["labels"]) == len(body["explanations"]) == len(body["explained_class"]) == 1000
    assert body["explained_class"] == body["labels"] == model.predict_labels(rows)
    one = _predict(server, _records(rows.head(1)), explain=True).json()
    assert one["labels"] == body["labels"][:1] and len(one["probabilities"]) == 1
    for empty in (
        {"instances": []},
        {"instances": [], "explain": True},
        {"dataframe_split": {"columns": ["size", "speed", "shape"], "data": []}},
    ):
        refused = requests.post(server.predict_url(), json=empty, timeout=10)
        assert refused.status_code == 422, (empty, refused.text)
        assert "labels" not in refused.json()
