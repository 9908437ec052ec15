"""`ml-platform trace` against the review tests' production home: champion v1 of flight_delay, trained and
registered by a real Dagster retrain, served by a real endpoint whose prediction log is traced through the real
command. Alias moves are written by `Registry` into a copy of the store, never into the shared home."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import requests
from mlflow import MlflowClient

from ml_platform.cli import main
from ml_platform.core.data_versions import versions_digest
from ml_platform.core.mlflow_store import SMOKE_ROWS
from ml_platform.core.recipe import DIRTY_TAG, GIT_COMMIT_TAG, RESOLVED_SPEC, SOURCE_NOTE_TAG
from ml_platform.core.registry import Registry
from ml_platform.serving.prediction_log import COLUMNS, connect, log_path
from ml_platform_tests.review.conftest import Production
from ml_platform_tests.serving.conftest import start_server  # noqa: F401 - the fixture, used by name

# One worker with the review modules: they share the session's production home (a trained champion).
pytestmark = pytest.mark.xdist_group("review")

MODEL = "flight_delay"


def _environment(home: Path, uri: str) -> dict[str, str]:
    return {"ML_PLATFORM_HOME": str(home), "MLFLOW_TRACKING_URI": uri, "MLFLOW_REGISTRY_URI": uri}


def _trace_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ml_platform.cli", "trace", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_served_prediction_traces_to_what_mlflow_holds(production, start_server, tmp_path):  # noqa: F811
    home = tmp_path / "home"  # the server's home (start_server's): its prediction log is searched there
    env = _environment(home, production.uri)
    client = production.client()
    registered = client.get_model_version(MODEL, "1")
    run = client.get_run(registered.run_id)
    rows = json.loads(Path(client.download_artifacts(run.info.run_id, SMOKE_ROWS, str(tmp_path))).read_text())
    server = start_server(env=env, log_path=log_path(home, MODEL))
    before = time.time()

    answer = requests.post(server.predict_url(), json={"instances": rows["rows"][:3]}, timeout=30)

    assert answer.status_code == 200, answer.text
    request_id = answer.json()["request_id"]
    assert answer.headers["x-request-id"] == request_id
    done = _trace_cli(env, request_id, "--json")
    assert done.returncode == 0, done.stderr + done.stdout
    chain = json.loads(done.stdout)
    tags, params = run.data.tags, run.data.params
    days = json.loads(Path(client.download_artifacts(run.info.run_id, "data_versions.json", str(tmp_path))).read_text())
    assert chain["request_id"] == request_id and chain["model"] == MODEL and chain["rows"] == 3
    assert before - 1 <= datetime.fromisoformat(chain["time"]).timestamp() <= time.time()
    assert chain["time"].endswith("+00:00")
    assert (chain["version"], chain["routed"], chain["shadow_version"]) == ("1", "champion", None)
    assert (chain["aliases"], chain["champion"], chain["entries"]) == (["champion"], "1", 1)
    assert chain["run_id"] == run.info.run_id and chain["experiment_id"] == run.info.experiment_id
    assert chain["experiment"] == client.get_experiment(run.info.experiment_id).name
    assert chain["dagster_run_id"] == registered.tags["dagster_run_id"] == tags["dagster_run_id"]
    assert chain["window"] == tags["window"] and chain["partition"] == params["partition"]
    assert chain["window_days"] == params["window_days"]
    assert chain["data_versions"] == days and len(days) > 10
    assert chain["data_versions_digest"] == versions_digest(days) == tags["data_versions_digest"]
    assert chain["spec_digest"] == tags["spec_digest"] == registered.tags["spec_digest"]
    assert chain["spec_artifact"] == f"runs:/{run.info.run_id}/{RESOLVED_SPEC}"
    assert (chain["commit"], chain["source_note"]) == (tags.get(GIT_COMMIT_TAG), tags.get(SOURCE_NOTE_TAG))
    assert chain["dirty"] == ({"true": True, "false": False}[tags[DIRTY_TAG]] if DIRTY_TAG in tags else None)
    assert chain["commit"] or chain["source_note"]
    derived = {k.split(".")[2]: v for k, v in tags.items() if k.startswith("ml_platform.derived.")}
    assert chain["derived"] == derived
    assert chain["model_sha256"] == registered.tags["model_sha256"]
    assert (chain["missing"], chain["exit_code"]) == ([], 0)

    shown = _trace_cli(env, request_id, "--model", MODEL)

    assert shown.returncode == 0, shown.stderr
    assert f"{run.info.run_id} (experiment {chain['experiment']}" in shown.stdout
    assert re.search(rf"^dagster run +{chain['dagster_run_id']}$", shown.stdout, flags=re.M)
    assert f"{len(days)} days, digest {chain['data_versions_digest']}" in shown.stdout
    assert min(days) in shown.stdout and max(days) in shown.stdout and "…" in shown.stdout
    assert f"digest {chain['spec_digest']}" in shown.stdout and chain["model_sha256"] in shown.stdout


def test_an_unknown_request_or_home_exits_2_naming_what_was_searched(production, tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    for name, value in _environment(home, production.uri).items():
        monkeypatch.setenv(name, value)

    assert main(["trace", "nope"]) == 2
    assert f"no platform home at {home}" in capsys.readouterr().err

    connect(log_path(home, MODEL)).close()
    assert main(["trace", "nope"]) == 2
    assert f"request 'nope' is not in the prediction logs searched: {log_path(home, MODEL)}" in capsys.readouterr().err
    assert main(["trace", "nope", "--model", "other"]) == 2
    assert str(log_path(home, "other")) in capsys.readouterr().err


def _log(home: Path, request_id: str, version: str, routed: str = "champion", shadow: str | None = None) -> None:
    """One answered request in the model's real prediction log, at this moment."""
    connection = connect(log_path(home, MODEL))
    row = (
        request_id,
        time.time(),
        MODEL,
        version,
        1,
        "[{}]",
        "[0.5]",
        1.0,
        shadow,
        "[0.4]" if shadow else None,
        routed,
    )
    connection.execute(f"INSERT INTO predictions ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(row))})", row)
    connection.close()
    time.sleep(0.01)


def _traced(request_id: str, capsys) -> tuple[int, dict]:
    status = main(["trace", request_id, "--json"])
    return status, json.loads(capsys.readouterr().out)


def test_each_request_gets_the_aliases_of_its_time_and_a_deleted_version_a_partial_chain(
    production: Production, tmp_path, monkeypatch, capsys
):
    store = tmp_path / "mlflow.db"  # a copy: the versions and audit records written here stay here
    shutil.copy(production.home / "mlflow" / "mlflow.db", store)
    uri, home = f"sqlite:///{store}", tmp_path / "home"
    for name, value in _environment(home, uri).items():
        monkeypatch.setenv(name, value)
    registry = Registry(MlflowClient(tracking_uri=uri, registry_uri=uri), MODEL)
    first = registry.client.get_model_version(MODEL, "1")
    registry.client.create_model_version(MODEL, first.source, run_id=first.run_id)
    registry.client.set_registered_model_alias(MODEL, "challenger", "2")  # as Registry.register does
    time.sleep(0.01)
    _log(home, "canary", "2", routed="canary", shadow="1")
    registry.promote("2", "a test's promotion", {})
    _log(home, "after-promote", "2", shadow="1")
    registry.rollback("a test's rollback", {})
    _log(home, "after-rollback", "1", shadow="2")

    for request_id, version, aliases, champion in (
        ("canary", "2", ["challenger"], "1"),
        ("after-promote", "2", ["champion"], "2"),
        ("after-rollback", "1", ["champion"], "1"),
    ):
        status, chain = _traced(request_id, capsys)
        assert status == 0 and chain["missing"] == [], chain
        assert (chain["version"], chain["aliases"], chain["champion"]) == (version, aliases, champion), request_id
        assert chain["run_id"] == first.run_id and chain["notes"] == []

    registry.client.delete_model_version(MODEL, "2")
    status, chain = _traced("after-promote", capsys)

    assert status == 1 and chain["exit_code"] == 1
    assert (chain["request_id"], chain["version"], chain["champion"]) == ("after-promote", "2", "2")
    assert chain["run_id"] is None and any("v2 cannot be read from the registry" in m for m in chain["missing"])
    assert main(["trace", "after-promote"]) == 1
    assert "missing" in capsys.readouterr().out

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'gone' / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", f"sqlite:///{tmp_path / 'gone' / 'mlflow.db'}")
    status, chain = _traced("after-rollback", capsys)

    assert status == 1 and chain["version"] == "1" and chain["champion"] is None
    assert "no such database" in chain["missing"][0] and "beyond the prediction log" in chain["missing"][0]
