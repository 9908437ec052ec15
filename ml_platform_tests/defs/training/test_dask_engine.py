"""Integration: `training.engine: dask` on a real Dask LocalCluster, through the same graph as the local engine:
the training set split and stored by the workers, lightgbm.dask training, the gates, the registry, the endpoint,
batch predictions and drift's batch fallback scored on the workers. Then the failures a user meets: a scheduler
that does not answer, a worker killed mid-training, workers too small for a partition."""

from __future__ import annotations

import hashlib
import json
import socket
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from ml_platform.cli import main
from ml_platform.core.model import MODEL_FILE, Model
from ml_platform.core.reproduce import Verdict
from ml_platform_tests.defs.helpers import (
    _aliases,
    _client,
    _day,
    _materialize,
    _metadata,
    _partitions,
    _retrain,
    _versions,
)

DASK = {"training.engine": "dask"}


def _failure(result) -> str:
    """Why a run failed: its step failures and its failed checks (a gate that said no)."""
    steps = [
        str(e.event_specific_data.error.message) for e in result.all_events if e.event_type_value == "STEP_FAILURE"
    ]
    checks = [f"{c.check_name}: {c.metadata}" for c in result.get_asset_check_evaluations() if not c.passed]
    return "\n".join(steps + checks)


def test_a_dask_spec_trains_gates_registers_serves_and_scores(platform, instance, capfd):
    from ml_platform.core.deploy import stop_local_server

    make, home = platform
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Each version is gated against the champion of the other engine; on one window the two engines' models
    # differ by up to 0.02 (asserted below), so the usual 0.01 tolerance would decide by chance which run passes.
    common = {"serving.port": port, "gates.max_regression": 0.05}
    defs = make({**DASK, **common})
    partition = _partitions(defs)[0]
    result = _retrain(defs, instance, partition)
    assert result.success, _failure(result)

    training = _metadata(result, "training_set")
    assert training["upstream_partitions"] == 56 and training["rows_test"] > 0
    assert training["dask_dashboard"].startswith("http://127.0.0.1:") and training["dask_workers"] >= 1
    stored = home / "storage" / "flight_delay" / "training_set" / f"{partition}.parquet"
    assert stored.is_dir() and len(list(stored.glob("part-*.parquet"))) == 56  # written by the workers
    assert len(pd.read_parquet(stored)) == training["rows"]

    model = _metadata(result, "model")
    assert model["registered_version"] == "1" and model["dask_dashboard"].startswith("http://")
    run = _client(home).get_run(model["mlflow_run_id"])
    assert run.data.params["engine"] == "dask" and int(run.data.params["fit_rounds"]) >= 1
    trained = Model.load(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model_files"))
    assert trained.manifest["engine"]["name"] == "dask"
    assert "validation days" in trained.manifest["fit"]["rounds_chosen_by"]
    assert trained.manifest["fit"]["rows"] == training["rows_train"] + training["rows_valid"]
    assert trained.booster.num_trees() == trained.manifest["fit"]["rounds"]  # the native text model

    evaluation = _metadata(result, "evaluation")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert all(checks.values()), checks
    assert _aliases(home) == {"champion": "1"}

    # The same spec on the local engine, same window: a new version (the engine is part of the spec), and a
    # holdout metric close to the Dask one.
    local = _retrain(make(common), instance, partition)
    assert local.success, _failure(local)
    assert _metadata(local, "model")["registered_version"] == "2"
    assert abs(_metadata(local, "evaluation")["test_roc_auc"] - evaluation["test_roc_auc"]) < 0.02

    # Served by the same endpoint, and pyfunc agrees with the platform's scorer.
    defs = make({**DASK, **common})
    assert _retrain(defs, instance, partition).success  # back to a Dask version: v3 (a new run, same data)
    # ... and the same model bytes as v1: each partition's worker and rank are fixed by rule
    assert _model_sha256(home, "3") == _model_sha256(home, "1")
    # `ml-platform reproduce` retrains a Dask version on a cluster of its recorded size: byte-identical, and
    # stdout is the one JSON object (the workers' LightGBM network messages go to stderr)
    capfd.readouterr()
    assert main(["reproduce", "flight_delay", "3", "--json"]) == 0
    reproduced = json.loads(capfd.readouterr().out)
    assert reproduced["verdict"] == Verdict.IDENTICAL, reproduced
    try:
        endpoint = _metadata(_materialize(defs, instance, "endpoint"), "endpoint")
        assert endpoint["smoke_test"]["passed"] and endpoint["smoke_test"]["max_abs_diff"] == 0.0
        day = _day(partition, 3)
        scored = _materialize(defs, instance, "predictions", day)
        assert scored.success and _metadata(scored, "predictions")["dask_workers"] >= 1
        folder = home / "storage" / "flight_delay" / "predictions" / f"{day}.parquet"
        assert folder.is_dir()
        frame = pd.read_parquet(folder)
        features = pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{day}.parquet")
        version = _aliases(home)["champion"]
        run_id = _client(home).get_model_version("flight_delay", version).run_id
        champion = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
        assert (frame["model_version"] == version).all()
        assert np.array_equal(frame["prediction"].to_numpy(), champion.predict(features))
        pyfunc = mlflow.pyfunc.load_model("models:/flight_delay@champion")
        sent = features.head(200).astype(dict.fromkeys(features.select_dtypes("category").columns, object))
        assert np.array_equal(pyfunc.predict(sent)["prediction"].to_numpy(), champion.predict(features.head(200)))
        drift = _materialize(defs, instance, "drift", day)
        assert "Dask workers" in _metadata(drift, "drift")["live_source"]
    finally:
        stop_local_server("flight_delay", home)


def _model_sha256(home, version: str) -> str:
    run_id = _client(home).get_model_version("flight_delay", version).run_id
    folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files")
    return hashlib.sha256((Path(folder) / MODEL_FILE).read_bytes()).hexdigest()


def test_an_unreachable_scheduler_names_the_address_and_the_variable(platform, instance, monkeypatch):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens here
    monkeypatch.setenv("ML_PLATFORM_DASK_ADDRESS", f"tcp://127.0.0.1:{port}")
    make, home = platform
    defs = make(DASK)
    result = _retrain(defs, instance, _partitions(defs)[0])
    assert not result.success
    message = _failure(result)
    assert f"tcp://127.0.0.1:{port}" in message and "ML_PLATFORM_DASK_ADDRESS" in message
    assert _versions(home) == []


@pytest.fixture
def small_workers(monkeypatch):
    """A cluster of its own whose workers may use 64 KB each (the nanny told not to act on it, so the workers
    stay up while the platform refuses the work), reached through ML_PLATFORM_DASK_ADDRESS."""
    import dask
    from distributed import LocalCluster

    with dask.config.set(
        {
            "distributed.worker.memory.terminate": False,
            "distributed.worker.memory.pause": False,
            "distributed.worker.memory.spill": False,
            "distributed.worker.memory.target": False,
        }
    ):
        cluster = LocalCluster(
            n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None, memory_limit="64KB"
        )
    monkeypatch.setenv("ML_PLATFORM_DASK_ADDRESS", cluster.scheduler_address)
    yield cluster
    cluster.close()


def test_workers_too_small_for_a_partition_say_which_and_what_to_change(platform, instance, small_workers):
    make, home = platform
    defs = make(DASK)
    result = _retrain(defs, instance, _partitions(defs)[0])
    assert not result.success
    message = _failure(result)
    assert "partition" in message and ".parquet" in message and "ML_PLATFORM_DASK_MEMORY_LIMIT" in message
    assert "the smallest Dask worker may use 62 KB" in message  # 64 KB as Dask parses it (64,000 bytes)
    assert _versions(home) == []


@pytest.fixture
def two_workers(monkeypatch):
    """A two-worker cluster of its own (nannies restart a killed worker), reached through ML_PLATFORM_DASK_ADDRESS."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
    monkeypatch.setenv("ML_PLATFORM_DASK_ADDRESS", cluster.scheduler_address)
    with Client(cluster, set_as_default=False) as client:
        yield cluster, client
    cluster.close()


@pytest.fixture
def no_leftover_tails(tmp_path):
    """Dagster mirrors a step's output through `tail -F` on its compute log; a run that fails while another
    thread waits on it (the killed worker) leaves those processes behind: they end with the test."""
    yield
    import psutil

    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if cmdline[:1] == ["tail"] and any(str(tmp_path) in part for part in cmdline):
            process.kill()


def _training_started(dask_scheduler) -> bool:
    return any("_fit_rank" in str(key) for key, task in dask_scheduler.tasks.items() if task.state == "processing")


def test_a_worker_killed_mid_training_fails_the_run_and_leaves_registry_and_cluster_usable(
    platform, instance, two_workers, no_leftover_tails
):
    import os
    import signal
    import threading
    import time

    _cluster, client = two_workers
    make, home = platform
    # Enough rounds that training lasts a few seconds: early stopping never stops a slow learner.
    defs = make(
        {
            **DASK,
            "training.num_boost_round": 300,
            "training.early_stopping_rounds": 300,
            "training.params": {"learning_rate": 0.005, "num_leaves": 15},
            "gates.min": 0.5,
            "gates.max_regression": 1.0,
        }
    )
    first, second = _partitions(defs)[:2]
    assert _retrain(defs, instance, first).success
    assert _aliases(home) == {"champion": "1"}

    outcome = {}
    runner = threading.Thread(target=lambda: outcome.update(result=_retrain(defs, instance, second)))
    runner.start()
    deadline = time.monotonic() + 120
    while not client.run_on_scheduler(_training_started) and runner.is_alive():
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    victim, pid = sorted(client.run(os.getpid).items())[0]
    os.kill(pid, signal.SIGKILL)
    runner.join(180)
    assert not runner.is_alive()
    result = outcome["result"]
    assert not result.success
    message = _failure(result)
    assert victim in message and "left the cluster during training" in message
    assert _aliases(home) == {"champion": "1"} and _versions(home) == ["1"]
    runs = _client(home).search_runs([_client(home).get_experiment_by_name("ml_platform/flight_delay").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]

    # The cluster is usable again: the nanny replaced the killed worker, the other was restarted.
    client.wait_for_workers(2, timeout=60)
    retried = _retrain(defs, instance, second)
    assert retried.success, _failure(retried)
    assert _versions(home) == ["1", "2"]


def test_a_launched_dask_retrain_starts_its_own_cluster_and_links_its_dashboard(platform, tmp_path, monkeypatch):
    """As the UI launches it: a fresh `dagster` process whose steps start a local cluster (worker processes
    spawned from the launched process) and name its dashboard in their metadata."""
    import shutil

    import dagster as dg

    from ml_platform_tests.defs.training.test_launched_retrain import REPO, SELECTION, _last_run, _launch

    monkeypatch.delenv("ML_PLATFORM_DASK_ADDRESS", raising=False)
    make, home = platform
    partition = _partitions(make(DASK))[0]
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")
    done = _launch(
        ["asset", "materialize", "--select", SELECTION, "--partition", partition],
        home,
        tmp_path / "specs",
        dagster_home,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run, events = _last_run(dagster_home)
    assert run.status == dg.DagsterRunStatus.SUCCESS
    links = {
        e.step_key.split("__")[-1]: e.event_specific_data.materialization.metadata["dask_dashboard"].value
        for e in events
        if e.event_type_value == "ASSET_MATERIALIZATION"
        and "dask_dashboard" in e.event_specific_data.materialization.metadata
    }
    assert set(links) == {"training_set", "model", "evaluation"}
    assert all(link.startswith("http://127.0.0.1:") for link in links.values())
    assert _aliases(home) == {"champion": "1"}
