"""End to end on text labels, one model per task, each on a real Dagster instance, MLflow store and
endpoint: raw → features → training set → model → evaluation (gates) → champion → endpoint → batch
predictions → drift → live performance, with the endpoint answering labels and MLflow's pyfunc the same.

- multiclass: the airport a 2013 NYC departure leaves from (`origin`: EWR, JFK, LGA), spec under
  `ml_platform_tests/specs/`;
- binary: a "yes"/"no" outcome in a CSV the test writes (`target.positive: "yes"`), and the same data as a 0/1
  target (the path every existing binary model takes), and as a regression target.
"""

from __future__ import annotations

import socket
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
import requests
import yaml
from mlflow import MlflowClient

from ml_platform import cli
from ml_platform.core.model import Model
from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec
from ml_platform_tests.defs.helpers import _metadata

SPECS = Path(__file__).parents[1] / "specs"


@pytest.fixture
def fresh(home, monkeypatch):
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)
    return home


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _failure(result) -> str:
    return "\n".join(
        str(e.event_specific_data.error.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    )


def _run(defs, instance, model: str, stages: list[str], **kwargs):
    result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, asset_selection=[dg.AssetKey([model, s]) for s in stages], raise_on_error=False, **kwargs
    )
    assert result.success, _failure(result)
    return result


def _backfill(defs, instance, model: str, first: str, last: str) -> None:
    _run(
        defs,
        instance,
        model,
        ["raw", "features"],
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
    )


def _retrain(defs, instance, model: str, partition: str):
    result = defs.resolve_job_def(f"{model}_retrain").execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False
    )
    assert result.success, _failure(result)
    return result


def _champion(home: Path, model: str) -> Model:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    version = client.get_model_version_by_alias(model, "champion")
    return Model.load(mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path="model_files"))


def _records(frame: pd.DataFrame, drop: str) -> list[dict]:
    """Feature rows as a client sends them (key and event time included, missing values as null)."""
    rows = frame.drop(columns=[drop]).astype(object).where(frame.drop(columns=[drop]).notna(), None)
    return [{k: (str(v) if isinstance(v, pd.Timestamp) else v) for k, v in r.items()} for r in rows.to_dict("records")]


def _post(port: int, model: str, rows: list[dict], **extra) -> dict:
    response = requests.post(
        f"http://127.0.0.1:{port}/v1/models/{model}/predict", json={"instances": rows, **extra}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def _pyfunc_matches(model: str, features: pd.DataFrame, answer: dict) -> None:
    """MLflow's pyfunc of the champion answers, field for field, what the endpoint answered."""
    sent = features.astype(dict.fromkeys(features.select_dtypes("category").columns, object))  # text, as sent
    frame = mlflow.pyfunc.load_model(f"models:/{model}@champion").predict(sent)
    if "labels" not in answer:  # regression: the values
        assert np.allclose(np.asarray(frame, dtype=float), answer["predictions"], rtol=0, atol=1e-12)
        return
    assert frame["label"].tolist() == answer["labels"]
    assert np.allclose(
        np.vstack(frame["prediction"].map(np.atleast_1d)),
        np.vstack([np.atleast_1d(p) for p in answer["predictions"]]),
        rtol=0,
        atol=1e-12,
    )
    if "probabilities" in answer:
        for got, sent in zip(frame["probabilities"], answer["probabilities"], strict=True):
            assert list(got) == list(sent) and got == pytest.approx(sent, rel=0, abs=1e-12)


def test_a_multiclass_model_on_text_labels_runs_from_raw_data_to_its_endpoint(fresh, instance, tmp_path, capsys):
    from ml_platform.core.deploy import stop_local_server

    home, model, spec_file = fresh, "flight_origin", SPECS / "flight_origin.yaml"
    assert cli.check(str(spec_file)) == 0
    trap = yaml.safe_load(spec_file.read_text())
    trap["target"] = {"name": "lateness", "expression": "(arr_delay > 15) + (arr_delay > 60)"}
    (tmp_path / "trap.yaml").write_text(yaml.safe_dump(trap))
    assert cli.check(str(tmp_path / "trap.yaml")) == 1
    assert "(arr_delay > 15) * 1 + (arr_delay > 60) * 1" in capsys.readouterr().err

    port = _free_port()
    spec = yaml.safe_load(spec_file.read_text())
    spec["serving"] = {"port": port}
    (tmp_path / "flight_origin.yaml").write_text(yaml.safe_dump(spec))
    defs = build_definitions([load_spec(tmp_path / "flight_origin.yaml")])
    partition = defs.resolve_assets_def(dg.AssetKey([model, "model"])).partitions_def.get_partition_keys()[0]
    _backfill(defs, instance, model, "2024-07-02", "2024-07-16")
    features_meta = _metadata(_run(defs, instance, model, ["features"], partition_key="2024-07-03"), "features")
    assert set(features_meta["classes"]) == {"EWR", "JFK", "LGA"}

    result = _retrain(defs, instance, model, partition)
    trained = _champion(home, model)
    assert trained.manifest["classes"] == ["EWR", "JFK", "LGA"]
    evaluation = _metadata(result, "evaluation")
    assert evaluation["test_macro_f1"] > evaluation["baseline_macro_f1"]
    header = evaluation["confusion_matrix"].splitlines()[0]
    assert [cell.strip() for cell in header.strip("|").split("|")] == ["actual", "EWR", "JFK", "LGA"]

    day = "2024-07-16"
    features = pd.read_parquet(home / "storage" / model / "features" / f"{day}.parquet")
    try:
        endpoint = _metadata(_run(defs, instance, model, ["endpoint"]), "endpoint")
        assert endpoint["smoke_test"]["passed"], endpoint["smoke_test"]
        rows = _records(features.head(300), "origin")
        answer = _post(port, model, rows[:40], explain=True)
        assert set(answer["labels"]) <= {"EWR", "JFK", "LGA"}
        for probabilities, label, scores in zip(
            answer["probabilities"], answer["labels"], answer["predictions"], strict=True
        ):
            assert list(probabilities) == ["EWR", "JFK", "LGA"] and sum(probabilities.values()) == pytest.approx(1)
            assert max(probabilities, key=probabilities.get) == label and list(probabilities.values()) == scores
        assert answer["explained_class"] == answer["labels"]
        offline = features.head(40)
        assert answer["labels"] == trained.predict_labels(offline)
        assert trained.explained(offline) == answer["explained_class"]
        _pyfunc_matches(model, offline, answer)
        _post(port, model, rows[40:])  # the rest of the traffic, logged with its event time and key

        scored = _run(defs, instance, model, ["predictions"], partition_key=day)
        stored = pd.read_parquet(home / "storage" / model / "predictions" / f"{day}.parquet")
        assert set(stored["predicted_label"]) <= {"EWR", "JFK", "LGA"}
        assert stored["predicted_label"].tolist() == trained.predict_labels(features)
        assert set(_metadata(scored, "predictions")["predicted_classes"]) <= {"EWR", "JFK", "LGA"}

        drift = _metadata(_run(defs, instance, model, ["drift"], partition_key=day), "drift")
        assert drift["rows"] == 300 and drift["prediction_psi"] is not None
        performance = _metadata(_run(defs, instance, model, ["performance"], partition_key=day), "performance")
        assert performance["labelled_rows"] == 300 and 0.5 < performance["macro_f1"] <= 1
        assert performance["unseen_labels"] == {}
    finally:
        stop_local_server(model, home)


EVENTS = "events"
TARGETS = {  # case → (task, target section, the column the CSV holds it in)
    "binary_text": ("binary", {"column": "outcome", "positive": "yes"}, "outcome"),
    "binary_01": ("binary", {"column": "churned"}, "churned"),
    "regression": ("regression", {"column": "spend"}, "spend"),
}


def _events_csv(path: Path) -> None:
    """Ten days of events, 400 a day: a yes/no outcome (and the same as 0/1) driven by `x` and `group`, and
    a spend driven by the same."""
    rng = np.random.default_rng(7)
    stamps = pd.date_range("2024-03-01", "2024-03-11", freq="216s", inclusive="left")
    x, group = rng.normal(size=len(stamps)), rng.choice(["a", "b", "c"], len(stamps))
    churned = (x + (group == "a") + rng.normal(scale=0.7, size=len(stamps)) > 0.5).astype(int)
    pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(stamps))],
            "event_time": stamps,
            "x": x,
            "group": group,
            "outcome": np.where(churned == 1, "yes", "no"),
            "churned": churned,
            "spend": 10 + 3 * x + 2 * (group == "b") + rng.normal(size=len(stamps)),
        }
    ).to_csv(path, index=False)


def _events_spec(folder: Path, task: str, target: dict, port: int) -> Path:
    metric = {"binary": "roc_auc", "regression": "rmse"}[task]
    (folder / f"{EVENTS}.yaml").write_text(
        yaml.safe_dump(
            {
                "name": EVENTS,
                "description": "Events on text labels",
                "owner": "team:ml",
                "task": task,
                "timestamp": "event_time",
                "key": "event_id",
                "source": {"kind": "files", "path": str(folder / "events.csv")},
                "partitions": {"cadence": "daily", "start": "2024-03-01", "end": "2024-03-11"},
                "target": target,
                "features": {"numeric": ["x"], "categorical": ["group"]},
                "expectations": {"columns": {"outcome": {"dtype": "str", "allowed": ["yes", "no"]}}},
                "training": {
                    "cadence": "daily",
                    "window_days": 6,
                    "validation_days": 1,
                    "test_days": 1,
                    "num_boost_round": 40,
                    "early_stopping_rounds": 5,
                },
                "gates": {"metric": metric, **({"min": 0.6} if task == "binary" else {"max": 10.0})},
                "monitoring": {"performance": {"metric": metric}},
                "serving": {"port": port},
            }
        )
    )
    return folder / f"{EVENTS}.yaml"


@pytest.mark.parametrize("case", list(TARGETS))
def test_a_binary_or_regression_model_runs_from_raw_data_to_its_endpoint(case, fresh, instance, tmp_path, capsys):
    from ml_platform.core.deploy import stop_local_server

    task, target, column = TARGETS[case]
    home, port = fresh, _free_port()
    _events_csv(tmp_path / "events.csv")
    if case == "binary_text":  # a text target without its positive class: check names the field and the quotes
        spec_file = _events_spec(tmp_path, task, {"column": "outcome"}, port)
        assert cli.check(str(spec_file)) == 1
        assert "target.positive" in capsys.readouterr().err
    spec_file = _events_spec(tmp_path, task, target, port)
    assert cli.check(str(spec_file)) == 0
    defs = build_definitions([load_spec(spec_file)])
    _backfill(defs, instance, EVENTS, "2024-03-01", "2024-03-10")
    _retrain(defs, instance, EVENTS, "2024-03-06")  # the window 03-01 → 03-06
    trained = _champion(home, EVENTS)
    if task == "binary":
        assert trained.labels.classes == (("no", "yes") if case == "binary_text" else (0, 1))
        assert trained.manifest["positive"] == ("yes" if case == "binary_text" else 1)

    day = "2024-03-08"
    features = pd.read_parquet(home / "storage" / EVENTS / "features" / f"{day}.parquet")
    try:
        endpoint = _metadata(_run(defs, instance, EVENTS, ["endpoint"]), "endpoint")
        assert endpoint["smoke_test"]["passed"], endpoint["smoke_test"]
        rows = _records(features, column)
        answer = _post(port, EVENTS, rows[:30], explain=True)
        offline = features.head(30)
        assert np.allclose(answer["predictions"], trained.predict(offline), rtol=0, atol=1e-12)
        if task == "binary":
            positive = trained.labels.positive
            assert answer["labels"] == [
                positive if p >= 0.5 else trained.labels.classes[0] for p in answer["predictions"]
            ]
            assert answer["explained_class"] == [positive] * 30
        else:
            assert "labels" not in answer and "probabilities" not in answer
        _pyfunc_matches(EVENTS, offline, answer)
        _post(port, EVENTS, rows[30:])

        _run(defs, instance, EVENTS, ["predictions"], partition_key=day)
        stored = pd.read_parquet(home / "storage" / EVENTS / "predictions" / f"{day}.parquet")
        assert np.allclose(stored["prediction"].to_numpy(dtype=float), trained.predict(features), rtol=0, atol=1e-12)
        if task == "binary":
            assert stored["predicted_label"].tolist() == trained.predict_labels(features)
        performance = _metadata(_run(defs, instance, EVENTS, ["performance"], partition_key=day), "performance")
        metric = "roc_auc" if task == "binary" else "rmse"
        assert performance["labelled_rows"] == len(features)
        assert (0.6 < performance[metric] <= 1) if task == "binary" else (0 < performance[metric] < 3)
    finally:
        stop_local_server(EVENTS, home)
