"""Serving fixtures: a real model trained on real days, a real MLflow registry, real servers on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import requests

from ml_platform.core.features import build_features
from ml_platform.core.mlflow_store import use_store
from ml_platform.core.model import Model
from ml_platform.core.pyfunc_flavour import log_arguments
from ml_platform.core.sources import nycflights13
from ml_platform.core.training import split_by_time, train
from ml_platform.core.training_run import log_model_files
from ml_platform.spec import BUNDLED_SPECS, load_spec


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """Two real models (different windows) saved as folders, and held-out feature rows to score."""
    spec = load_spec(BUNDLED_SPECS / "flight_delay.yaml")
    raw = nycflights13.load(nycflights13.Replay(0), datetime(2013, 4, 1), datetime(2013, 6, 10))
    features, _ = build_features(raw, spec)
    root = tmp_path_factory.mktemp("models")
    folders = []
    for i, (start, end) in enumerate([("2013-04-01", "2013-05-27"), ("2013-04-15", "2013-06-10")]):
        window = features[(features["scheduled_departure"] >= start) & (features["scheduled_departure"] < end)]
        split = split_by_time(window.reset_index(drop=True), spec)
        result = train(spec, split)
        folders.append(result.model.save(root / f"v{i + 1}"))
    holdout = split.test[spec.features.names].reset_index(drop=True)
    return spec, folders, holdout


@pytest.fixture(scope="module")
def logged(trained, tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    """The newer model logged exactly as training logs it into a real local MLflow store, then downloaded as
    another team would: (the model's folder, rows to score). The portable-model tests score it outside the
    platform (test_portable_model.py, test_portable_model_docker.py)."""
    _, folders, holdout = trained
    root = tmp_path_factory.mktemp("portable")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = use_store(uri, uri)
    experiment = client.create_experiment("portable", artifact_location=(root / "artifacts").as_uri())
    try:
        with mlflow.start_run(experiment_id=experiment):
            model_uri, _ = log_model_files(Model.load(folders[1]), rows=holdout)
        folder = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(root / "downloaded")))
    finally:
        mlflow.set_tracking_uri(None)
        mlflow.set_registry_uri(None)
    return folder, holdout.head(40)


def records(frame: pd.DataFrame) -> list[dict]:
    """`frame`'s rows as JSON objects (missing values as null)."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict("records")]


def endpoint_answers(start_server, folder: Path, rows: list[dict]) -> dict:
    """The platform's endpoint, serving the logged model `folder`'s own files, for `rows`."""
    server = start_server("--model-dir", str(folder / "artifacts" / "model_files"))
    response = requests.post(server.predict_url(), json={"instances": rows}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def registry_store(tmp_path, trained, monkeypatch):
    """A real MLflow SQLite store with `flight_delay` v1 (champion) and v2 (challenger, gates passed)."""
    from ml_platform.core.registry import Registry

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment("serving", artifact_location=(tmp_path / "artifacts").as_uri())
    registry = Registry(client, "flight_delay")
    for folder in trained[1]:
        with mlflow.start_run(experiment_id=experiment) as run:
            mlflow.log_artifacts(str(folder), "model_files")
            with log_arguments(folder, Model.load(folder)) as arguments:
                info = mlflow.pyfunc.log_model(name="model", **arguments)
        registry.register(info.model_uri, run.info.run_id, tags={})
        registry.mark_gates(registry.version_of("challenger"), passed=True)
    registry.promote("1", "test setup", {})
    yield uri, registry
    mlflow.set_tracking_uri(None)


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log_path: Path, output: Path):
        self.process, self.url, self.log_path, self.output = process, url, log_path, output

    def predict_url(self, model: str = "flight_delay") -> str:
        return f"{self.url}/v1/models/{model}/predict"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)


@pytest.fixture
def start_server(tmp_path):
    """`start_server(*args, env=...)` runs `ml-platform serve` in its own process group; all are stopped after."""
    servers: list[Server] = []

    def start(
        *args: str,
        env: dict | None = None,
        log_path: Path | None = None,
        scheme: str = "http",
        verify: bool | str = True,
    ) -> Server:
        port = free_port()
        log_path = log_path or tmp_path / f"log-{port}.sqlite"
        output = tmp_path / f"server-{port}.out"
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ml_platform.cli",
                "serve",
                "--model",
                "flight_delay",
                "--port",
                str(port),
                "--log",
                str(log_path),
                *args,
            ],
            env={**os.environ, "ML_PLATFORM_HOME": str(tmp_path / "home"), **(env or {})},
            stdout=output.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = Server(process, f"{scheme}://127.0.0.1:{port}", log_path, output)
        servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, output.read_text()[-2000:]
            try:
                if requests.get(f"{server.url}/ready", timeout=1, verify=verify).status_code == 200:
                    return server
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("server not ready in 60 s:\n" + output.read_text()[-2000:])

    yield start
    for server in servers:
        server.stop(signal.SIGKILL)
