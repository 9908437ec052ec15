"""The endpoint over real HTTP: same answers as offline scoring, every bad request a 4xx naming its field."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import requests

from ml_platform.core.model import Model
from ml_platform.serving.prediction_log import read_log


def _records(frame):
    import pandas as pd

    return [
        {k: (None if pd.isna(v) else v.item() if hasattr(v, "item") else v) for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def test_online_equals_offline_alone_and_in_batches(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    model = Model.load(folders[0])
    rows = _records(holdout.head(200))
    expected = model.predict(holdout.head(200))
    batch = requests.post(server.predict_url(), json={"instances": rows}, timeout=10).json()
    assert batch["version"] and len(batch["request_id"]) == 32
    assert np.max(np.abs(np.asarray(batch["predictions"]) - expected)) <= 1e-9
    alone = [
        requests.post(server.predict_url(), json={"instances": [row]}, timeout=10).json()["predictions"][0]
        for row in rows[:30]
    ]
    assert np.max(np.abs(np.asarray(alone) - expected[:30])) <= 1e-9
    columns = list(rows[0])
    split = requests.post(
        server.predict_url(),
        json={"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns] for row in rows[:10]]}},
        timeout=10,
    ).json()
    assert np.max(np.abs(np.asarray(split["predictions"]) - expected[:10])) <= 1e-9


def test_unknown_category_is_scored_like_missing(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    row = _records(holdout.head(1))[0]
    unseen = requests.post(
        server.predict_url(), json={"instances": [{**row, "plane_manufacturer": "NEVER SEEN"}]}, timeout=10
    )
    missing = requests.post(server.predict_url(), json={"instances": [{**row, "plane_manufacturer": None}]}, timeout=10)
    assert unseen.status_code == missing.status_code == 200
    assert unseen.json()["predictions"] == missing.json()["predictions"]


def test_info_health_ready_metrics_and_explain(trained, start_server):
    spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    assert requests.get(f"{server.url}/health", timeout=5).json() == {"status": "ok"}
    assert requests.get(f"{server.url}/ready", timeout=5).json()["ready"] is True
    info = requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()
    assert {f["name"] for f in info["features"]} == set(spec.features.names)
    assert info["training_window"]["first_day"] and "valid_roc_auc" in info["metrics"]
    explained = requests.post(
        server.predict_url(), json={"instances": _records(holdout.head(2)), "explain": True}, timeout=10
    ).json()
    assert len(explained["explanations"]) == 2 and len(explained["explanations"][0]) == 5
    contributions = Model.load(folders[0]).contributions(holdout.head(1)).iloc[0].drop("(bias)")
    top = explained["explanations"][0][0]
    assert top["feature"] == contributions.abs().idxmax()
    assert abs(top["contribution"] - contributions[top["feature"]]) < 1e-9
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert 'ml_platform_requests_total{code="200",route="predict"} 1.0' in metrics
    assert "ml_platform_request_latency_seconds_bucket" in metrics
    assert 'ml_platform_predictions_total{role="answer",version=' in metrics


def _bad_cases(row: dict) -> list[tuple[str, object, int, str]]:
    """(case, body, expected status, the field the error must name)."""
    return [
        ("malformed JSON", b"{not json", 400, "body"),
        ("not an object", [1, 2], 400, "body"),
        ("no rows key", {"rows": []}, 422, "instances"),
        ("instances not a list", {"instances": {"a": 1}}, 422, "instances"),
        ("empty instances", {"instances": []}, 422, "instances"),
        ("wrong type", {"instances": [{**row, "distance": "far"}]}, 422, "instances[0].distance"),
        ("bool as number", {"instances": [{**row, "temp": True}]}, 422, "instances[0].temp"),
        (
            "missing feature",
            {"instances": [{k: v for k, v in row.items() if k != "carrier"}]},
            422,
            "instances[0].carrier",
        ),
        ("null not allowed", {"instances": [{**row, "distance": None}]}, 422, "instances[0].distance"),
        ("number as category", {"instances": [{**row, "origin": 1.5}]}, 422, "instances[0].origin"),
        ("second row bad", {"instances": [row, {**row, "month": "June"}]}, 422, "instances[1].month"),
        ("too many rows", {"instances": [row] * 1001}, 413, "instances"),
        (
            "bad dataframe_split",
            {"dataframe_split": {"columns": ["a"], "data": [[1, 2]]}},
            422,
            "dataframe_split.data[0]",
        ),
        ("explain not bool", {"instances": [row], "explain": "yes"}, 422, "explain"),
    ]


def test_bad_requests_get_a_4xx_naming_the_field(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    row = _records(holdout.head(1))[0]
    failures = []
    for case, body, status, field in _bad_cases(row):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = requests.post(
            server.predict_url(), data=data, headers={"Content-Type": "application/json"}, timeout=10
        )
        fields = [e["field"] for e in response.json().get("errors", [])]
        if response.status_code != status or field not in fields:
            failures.append((case, response.status_code, fields))
    assert failures == []
    huge = requests.post(server.predict_url(), data=b"x" * 2_000_001, timeout=10)
    assert huge.status_code == 413 and huge.json()["errors"][0]["field"] == "body"
    assert requests.get(server.predict_url(), timeout=5).status_code == 405
    assert requests.get(f"{server.url}/nope", timeout=5).status_code == 404
    assert len(read_log(server.log_path)) == 0, "bad requests must not be logged as predictions"


def test_bearer_token(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]), env={"ML_PLATFORM_API_TOKEN": "s3cret"})
    body = {"instances": _records(holdout.head(1))}
    assert requests.post(server.predict_url(), json=body, timeout=5).status_code == 401
    wrong = requests.post(server.predict_url(), json=body, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json()["errors"][0]["field"] == "authorization"
    ok = requests.post(server.predict_url(), json=body, headers={"Authorization": "Bearer s3cret"}, timeout=5)
    assert ok.status_code == 200
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200


def test_the_log_holds_each_answered_request(trained, start_server):
    _spec, folders, holdout = trained
    server = start_server("--model-dir", str(folders[0]))
    rows = _records(holdout.head(3))
    ids = [
        requests.post(server.predict_url(), json={"instances": rows}, timeout=5).json()["request_id"] for _ in range(5)
    ]
    log = read_log(server.log_path)
    assert log["request_id"].tolist() == ids
    assert (log["rows"] == 3).all() and (log["routed"] == "champion").all()
    assert json.loads(log.loc[0, "features"])[0]["carrier"] == rows[0]["carrier"]


def test_champion_switch_under_load_fails_nothing(trained, start_server, registry_store):
    """Move the alias while clients hammer the endpoint: no failed request, each response names its version."""
    _spec, folders, holdout = trained
    _uri, registry = registry_store
    server = start_server("--reload-interval", "0.5")
    rows = _records(holdout.head(5))
    expected = {
        "1": Model.load(folders[0]).predict(holdout.head(5)),
        "2": Model.load(folders[1]).predict(holdout.head(5)),
    }
    results, stop = [], threading.Event()

    def client():
        session = requests.Session()
        while not stop.is_set():
            response = session.post(server.predict_url(), json={"instances": rows}, timeout=10)
            results.append((response.status_code, response.json()))

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(2)
    registry.promote("2", "switch under load", {})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any(body.get("version") == "2" for _, body in results[-20:]):
        time.sleep(0.2)
    time.sleep(1)
    stop.set()
    for thread in threads:
        thread.join()
    assert results and all(status == 200 for status, _ in results)
    versions = [body["version"] for _, body in results]
    assert versions[0] == "1" and versions[-1] == "2"
    for _, body in results:
        assert np.max(np.abs(np.asarray(body["predictions"]) - expected[body["version"]])) <= 1e-9
    log = read_log(server.log_path)
    assert len(log) == len(results)
    assert set(log["version"]) == {"1", "2"}


def _rollout_specs(tmp_path, write_spec, rollout: dict):
    folder = tmp_path / "specs"
    write_spec(folder, {"serving.rollout": rollout}, name="flight_delay.yaml")
    return {"ML_PLATFORM_SPECS": str(folder)}


def test_shadow_scores_the_challenger_but_answers_with_the_champion(
    trained, start_server, registry_store, tmp_path, write_spec
):
    _spec, folders, holdout = trained
    env = _rollout_specs(tmp_path, write_spec, {"mode": "shadow"})
    server = start_server(env=env)
    rows = _records(holdout.head(4))
    body = requests.post(server.predict_url(), json={"instances": rows}, timeout=10).json()
    assert body["version"] == "1"
    log = read_log(server.log_path)
    assert log.loc[0, "version"] == "1" and log.loc[0, "shadow_version"] == "2"
    shadow = np.asarray(json.loads(log.loc[0, "shadow_outputs"]))
    assert np.max(np.abs(shadow - Model.load(folders[1]).predict(holdout.head(4)))) <= 1e-9
    assert requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()["challenger"] == "2"


def test_a_new_champion_is_answered_with_the_previous_one_scored_beside_it(
    trained, start_server, registry_store, tmp_path, write_spec
):
    """Within monitoring.performance.rollback_window of a promotion, the previous champion scores every request
    too (logged, never returned), so a rollback decision compares both on the same outcomes."""
    _spec, folders, holdout = trained
    _uri, registry = registry_store
    registry.promote("2", "newer", {})
    server = start_server(env=_rollout_specs(tmp_path, write_spec, {"mode": "none"}))
    rows = _records(holdout.head(5))
    body = requests.post(server.predict_url(), json={"instances": rows}, timeout=10).json()
    assert body["version"] == "2"
    entry = read_log(server.log_path).iloc[0]
    assert (entry["version"], entry["shadow_version"], entry["routed"]) == ("2", "1", "champion")
    previous = np.asarray(json.loads(entry["shadow_outputs"]))
    assert np.max(np.abs(previous - Model.load(folders[0]).predict(holdout.head(5)))) <= 1e-9
    assert requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()["previous_scored_beside"] == "1"


def test_an_endpoint_reloading_between_a_promotions_alias_moves_scores_the_previous_champion_beside_it(
    registry_store,
):
    """A promotion writes several aliases and tags one by one; an endpoint may reload between any two. Each reload
    seen mid-promotion serves either the old champion or the new one with the old scored beside it, never the new
    one alone (a rollback would then judge it on fewer outcomes) nor the new one as its own challenger."""
    import asyncio

    from mlflow import MlflowClient

    from ml_platform.serving.config import ServeConfig
    from ml_platform.serving.loader import RegistrySource
    from ml_platform.serving.prediction_log import LogPolicy
    from ml_platform.serving.slot import next_slot

    uri, registry = registry_store
    config = ServeConfig("flight_delay", "unused", rollout_mode="shadow", previous_window_s=3600)
    source = RegistrySource("flight_delay", uri, uri)
    seen: list[tuple[str, str | None, str | None]] = []

    def reload() -> None:
        slot = asyncio.run(next_slot(None, source, config, lambda _model: LogPolicy([], [], b"k")))
        assert slot is not None
        seen.append((slot.champion.version, _version(slot.challenger), _version(slot.previous)))

    class ReloadAfterEachMove(MlflowClient):
        def set_registered_model_alias(self, *args, **kwargs):
            super().set_registered_model_alias(*args, **kwargs)
            reload()

        def delete_registered_model_alias(self, *args, **kwargs):
            super().delete_registered_model_alias(*args, **kwargs)
            reload()

    registry.client = ReloadAfterEachMove(tracking_uri=uri, registry_uri=uri)
    reload()
    registry.promote("2", "a better model", {})
    assert seen[0] == ("1", "2", None) and seen[-1] == ("2", None, "1")
    assert all(state in {("1", "2", None), ("2", None, "1")} for state in seen), seen


def _version(model) -> str | None:
    return model.version if model else None


def test_a_challenger_that_has_not_passed_its_gates_gets_no_traffic(
    trained, start_server, registry_store, tmp_path, write_spec
):
    _spec, _folders, holdout = trained
    _uri, registry = registry_store
    registry.mark_gates("2", passed=False)
    env = _rollout_specs(tmp_path, write_spec, {"mode": "canary", "fraction": 0.9})
    server = start_server(env=env)
    rows = _records(holdout.head(30))
    answered = {
        requests.post(server.predict_url(), json={"instances": [r]}, timeout=10).json()["version"] for r in rows
    }
    assert answered == {"1"}
    assert read_log(server.log_path)["shadow_version"].isna().all()
    assert requests.get(f"{server.url}/v1/models/flight_delay", timeout=5).json()["challenger"] is None


def test_canary_routes_a_sticky_fraction_to_the_challenger(trained, start_server, registry_store, tmp_path, write_spec):
    _spec, folders, holdout = trained
    env = _rollout_specs(tmp_path, write_spec, {"mode": "canary", "fraction": 0.5, "key": "dest"})
    server = start_server(env=env)
    rows = _records(holdout.drop_duplicates("dest").head(40))
    first = [requests.post(server.predict_url(), json={"instances": [r]}, timeout=10).json()["version"] for r in rows]
    again = [requests.post(server.predict_url(), json={"instances": [r]}, timeout=10).json()["version"] for r in rows]
    assert first == again, "routing must be sticky by the rollout key"
    assert set(first) == {"1", "2"}
    log = read_log(server.log_path)
    assert set(log.loc[log["version"] == "2", "routed"]) == {"canary"}
    assert set(log.loc[log["version"] == "1", "routed"]) == {"champion"}
    # canary rows carry the champion's score too, so both are judged on the same outcomes
    canary = log[log["routed"] == "canary"]
    assert (
        set(canary["shadow_version"]) == {"1"} and log.loc[log["routed"] == "champion", "shadow_version"].isna().all()
    )
    champion = Model.load(folders[0])
    for _, entry in canary.iterrows():
        (row,) = json.loads(entry["features"])
        expected = champion.booster.predict(champion.encoder.transform_records([row]))[0]
        assert abs(json.loads(entry["shadow_outputs"])[0] - expected) <= 1e-9


def test_simulate_replays_days_through_the_endpoint_with_event_time(trained, start_server, tmp_path, write_spec):
    """`ml-platform simulate` sends real replayed rows (key and event time included) and can inject drift."""
    import subprocess
    import sys

    _spec, folders, _holdout = trained
    server = start_server("--model-dir", str(folders[0]), "--model-version", "7")
    folder = tmp_path / "specs"
    write_spec(folder, {"source.offset_weeks": 0}, name="flight_delay.yaml")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ml_platform.cli",
            "simulate",
            "--model",
            "flight_delay",
            "--days",
            "2",
            "--start",
            "2013-06-03",
            "--drift",
            "hot_weather",
            "--url",
            server.url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**__import__("os").environ, "ML_PLATFORM_SPECS": str(folder), "ML_PLATFORM_HOME": str(tmp_path / "home")},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    days = [json.loads(line) for line in result.stdout.splitlines()]
    assert [d["day"] for d in days] == ["2013-06-03", "2013-06-04"]
    assert all(d["failed"] == 0 and d["answered"] == d["rows"] > 500 and d["versions"] == ["7"] for d in days)
    log = read_log(server.log_path)
    assert log["rows"].sum() == sum(d["rows"] for d in days)
    first = json.loads(log.loc[0, "features"])[0]
    assert first["flight_id"].startswith("2013-06-03") and first["scheduled_departure"].startswith("2013-06-03")
    assert first["temp"] > 60, "hot_weather drift adds 30 degrees to early-June mornings"
