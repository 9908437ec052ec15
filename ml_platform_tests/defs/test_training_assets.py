"""Integration: real flight weeks through training_set → model → evaluation (gates) → champion.

A real Dagster instance, a real MLflow SQLite store and registry, real LightGBM training on real days. The
data layer for the first training windows is materialized once per module; each test gets its own platform
home for MLflow, so registries never leak between tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from ml_platform.core.model import Model
from ml_platform.core.registry import Registry
from ml_platform.defs import build_definitions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import load_spec

OFFSET_WEEKS = 600
STAGES = ("training_set", "model", "evaluation", "champion")
KEYS = [dg.AssetKey(["flight_delay", stage]) for stage in STAGES]


@pytest.fixture(scope="module")
def data_home(tmp_path_factory):
    """Features for the first four training windows of the replay (a real data-layer backfill)."""
    from ml_platform.spec import BUNDLED_SPECS
    import yaml

    root = tmp_path_factory.mktemp("training")
    spec_file = root / "flight_delay.yaml"
    data = yaml.safe_load((BUNDLED_SPECS / "flight_delay.yaml").read_text())
    data["source"]["offset_weeks"] = OFFSET_WEEKS
    spec_file.write_text(yaml.safe_dump(data))
    home = root / "data_home"
    previous = os.environ.get("ML_PLATFORM_HOME")
    os.environ["ML_PLATFORM_HOME"] = str(home)
    try:
        defs = build_definitions([load_spec(spec_file)])
        first = (date(2013, 1, 1) + timedelta(weeks=OFFSET_WEEKS)).isoformat()
        last = (date(2013, 1, 1) + timedelta(weeks=OFFSET_WEEKS, days=56 + 21 - 1)).isoformat()
        dagster_home = root / "dagster_data"
        dagster_home.mkdir()
        with dg.DagsterInstance.local_temp(str(dagster_home)) as instance:
            result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
                instance=instance, asset_selection=[dg.AssetKey(["flight_delay", "raw"]),
                                                    dg.AssetKey(["flight_delay", "features"])],
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last})
            assert result.success
    finally:
        if previous is None:
            os.environ.pop("ML_PLATFORM_HOME", None)
        else:
            os.environ["ML_PLATFORM_HOME"] = previous
    return root, spec_file, home


@pytest.fixture
def platform(data_home, tmp_path, monkeypatch, write_spec):
    """A fresh home (own MLflow store) that shares the module's stored features; `make(overrides)` → defs."""
    root, spec_file, shared = data_home
    home = tmp_path / "home"
    shutil.copytree(shared, home)
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(variable, raising=False)

    def make(overrides: dict | None = None) -> dg.Definitions:
        # Early 2013 winter weeks have a wide gap across origins; these tests are about the mechanics.
        overrides = {"gates.fairness": {"group": "origin", "max_gap": 0.5}, **(overrides or {})}
        return build_definitions([load_spec(write_spec(tmp_path / "specs", overrides, base=spec_file))])

    return make, home


def _partitions(defs: dg.Definitions) -> list[str]:
    return defs.resolve_assets_def(KEYS[1]).partitions_def.get_partition_keys()


def _retrain(defs, instance, partition, job: str = "flight_delay_retrain"):
    return defs.resolve_job_def(job).execute_in_process(instance=instance, partition_key=partition,
                                                        raise_on_error=False)


def _client(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(home: Path) -> dict[str, str]:
    client = _client(home)
    try:
        return {k: str(v) for k, v in client.get_registered_model("flight_delay").aliases.items()}
    except mlflow.exceptions.MlflowException:
        return {}


def _versions(home: Path) -> list[str]:
    return sorted(str(v.version) for v in _client(home).search_model_versions("name='flight_delay'"))


def _metadata(result, stage: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == stage]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def test_the_chain_trains_registers_gates_and_promotes(platform, instance):
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    result = _retrain(defs, instance, partition)
    assert result.success
    training = _metadata(result, "training_set")
    assert training["upstream_partitions"] == 56 and len(training["upstream_data_versions"]) == 56
    assert training["rows_test"] > 0 and training["splits"]["test"]["last_day"] == (
        date.fromisoformat(partition) + timedelta(days=6)).isoformat()
    model = _metadata(result, "model")
    assert model["registered_version"] == "1"
    run = _client(home).get_run(model["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["dagster_run_id"] == result.run_id
    assert run.data.tags["dagster_partition"] == partition
    assert run.data.params["objective"] == "binary" and "learning_rate" in run.data.params
    assert {"valid_roc_auc", "test_roc_auc", "baseline_roc_auc", "fairness_gap"} <= set(run.data.metrics)
    assert len(_client(home).get_metric_history(run.info.run_id, "curve_valid_auc")) > 1
    artifacts = {a.path for a in _client(home).list_artifacts(run.info.run_id)}
    assert {"model_card.md", "gates.json", "plots", "model_files", "data_versions.json"} <= artifacts
    evaluation = _metadata(result, "evaluation")
    assert evaluation["test_roc_auc"] > 0.6
    assert "data:image/png;base64," in evaluation["model_card"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"metric_floor": True, "not_worse_than_champion": True, "fairness_gap": True,
                      "prediction_sanity": True}
    champion = _metadata(result, "champion")
    assert champion["action"] == "promote" and champion["champion_version"] == "1"
    assert champion["audit"]["dagster_run_id"] == result.run_id
    assert _aliases(home) == {"champion": "1"}

    # The registered model loads through MLflow and predicts exactly what our scorer predicts.
    holdout = pd.read_parquet(home / "storage" / "flight_delay" / "training_set" / f"{partition}.parquet")
    rows = holdout[holdout["__split__"] == "test"].head(200)
    pyfunc = mlflow.pyfunc.load_model("models:/flight_delay@champion")
    ours = Model.load(mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="model_files"))
    assert np.array_equal(np.asarray(pyfunc.predict(rows)), ours.predict(rows))


def test_retraining_a_partition_gives_a_byte_identical_model(platform, instance):
    make, home = platform
    defs = make()
    partition = _partitions(defs)[1]
    first = _metadata(_retrain(defs, instance, partition), "model")
    second = _metadata(_retrain(defs, instance, partition), "model")
    assert first["model_sha256"] == second["model_sha256"]
    assert first["registered_version"] != second["registered_version"]


def test_weeks_of_backfill_promote_only_through_the_gates(platform, instance):
    """One model per week; each week's champion move follows its own gate results."""
    make, home = platform
    defs = make({"gates.max_regression": 0.0})
    champion = None
    for version, partition in enumerate(_partitions(defs)[:3], start=1):
        result = _retrain(defs, instance, partition)
        checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
        if all(checks.values()):
            assert result.success
            champion = str(version)
        else:
            assert not result.success
            assert not any(e.asset_key.path[-1] == "champion" for e in result.get_asset_materialization_events())
        assert _aliases(home).get("champion") == champion
    assert _versions(home) == ["1", "2", "3"]


def test_a_failing_gate_moves_nothing(platform, instance):
    make, home = platform
    partitions = _partitions(make())
    assert _retrain(make(), instance, partitions[0]).success
    strict = make({"gates.min": 0.99})
    result = _retrain(strict, instance, partitions[1])
    assert not result.success
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["metric_floor"] is False
    assert _aliases(home) == {"champion": "1", "challenger": "2"}
    run_id = _metadata(result, "model")["mlflow_run_id"]
    assert _client(home).get_run(run_id).data.tags["gate.metric_floor"] == "failed"


def test_rollback_and_approval_jobs_are_audited(platform, instance):
    make, home = platform
    partitions = _partitions(make())
    defs = make({"gates.max_regression": 1.0})
    assert _retrain(defs, instance, partitions[0]).success
    assert _retrain(defs, instance, partitions[1]).success
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    rollback = defs.resolve_job_def("flight_delay_rollback").execute_in_process(
        instance=instance, run_config={"ops": {"flight_delay_rollback_champion": {
            "config": {"reason": "bad live numbers", "requested_by": "oncall"}}}})
    assert rollback.success
    assert _aliases(home) == {"champion": "1", "previous": "2"}

    gated = make({"gates.max_regression": 1.0, "gates.require_approval": True})
    result = _retrain(gated, instance, partitions[2])
    assert result.success and _metadata(result, "champion")["action"] == "awaiting-approval"
    assert _aliases(home) == {"champion": "1", "previous": "2", "challenger": "3"}
    approve = gated.resolve_job_def("flight_delay_approve").execute_in_process(
        instance=instance, run_config={"ops": {"flight_delay_approve_challenger": {
            "config": {"version": "3", "approved_by": "reviewer"}}}})
    assert approve.success
    assert _aliases(home) == {"champion": "3", "previous": "1"}
    history = [(r["action"], r["version"]) for r in Registry(_client(home), "flight_delay").history()]
    assert history == [("promote", "1"), ("promote", "2"), ("rollback", "1"), ("awaiting-approval", "3"),
                       ("promote", "3")]


def test_mlflow_runs_end_whatever_job_launched_them(platform, instance):
    """The implicit asset job (a UI click) and a job with dagster-mlflow's hook both end runs FINISHED."""
    from dagster_mlflow import end_mlflow_on_run_finished

    make, home = platform
    defs = make()
    partitions = _partitions(defs)
    implicit = defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=partitions[0], asset_selection=KEYS)
    hooked_job = dg.define_asset_job("hooked_retrain", selection=KEYS, hooks={end_mlflow_on_run_finished})
    hooked_defs = dg.Definitions(assets=list(defs.assets), jobs=[hooked_job],
                                 resources={**defs.resources, "mlflow": MlflowTracking()})
    hooked = hooked_defs.resolve_job_def("hooked_retrain").execute_in_process(
        instance=instance, partition_key=partitions[1])
    for result in (implicit, hooked):
        assert result.success
        run_id = _metadata(result, "model")["mlflow_run_id"]
        assert _client(home).get_run(run_id).info.status == "FINISHED"


def test_a_failed_training_step_fails_its_mlflow_run_and_registers_nothing(platform, instance):
    make, home = platform
    defs = make({"training.params": {"num_leaves": -5}})
    result = _retrain(defs, instance, _partitions(defs)[0])
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "training.params" in message
    runs = _client(home).search_runs([_client(home).get_experiment_by_name("ml_platform/flight_delay").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert _versions(home) == []


def test_a_window_without_data_names_the_spec_field(platform, instance):
    make, home = platform
    defs = make()
    late = _partitions(defs)[10]  # its window lies beyond the features materialized for this module
    result = _retrain(defs, instance, late)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "training.window_days" in message and "missing" in message and late in message
    assert _versions(home) == []


def test_an_unreachable_mlflow_store_fails_clearly(platform, instance, monkeypatch):
    make, home = platform
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "3")
    defs = make()
    result = _retrain(defs, instance, _partitions(defs)[0])
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert "http://127.0.0.1:9" in message and "cannot be reached" in message
    assert failure.step_key == "flight_delay__model"


def test_an_interrupted_training_leaves_the_registry_as_it_was(platform, instance, tmp_path):
    """Interrupt the model step midway (a long Optuna search): aliases and versions stay as they were."""
    make, home = platform
    defs = make({"gates.max_regression": 1.0})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success
    before = (_aliases(home), _versions(home))
    make({"training.tuning": {"trials": 500, "timeout": "10m"}})  # rewrites the spec file used below
    script = tmp_path / "retrain.py"
    script.write_text(textwrap.dedent(f"""
        import dagster as dg
        from ml_platform.defs import build_definitions
        from ml_platform.spec import load_spec
        defs = build_definitions([load_spec({str(tmp_path / 'specs' / 'spec.yaml')!r})])
        with dg.DagsterInstance.ephemeral() as instance:
            defs.resolve_job_def("flight_delay_retrain").execute_in_process(
                instance=instance, partition_key={partitions[1]!r}, raise_on_error=False)
    """))
    process = subprocess.Popen([sys.executable, str(script)], env={**os.environ, "ML_PLATFORM_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        running = []
        while time.monotonic() < deadline and not running:
            time.sleep(0.5)
            experiment = _client(home).get_experiment_by_name("ml_platform/flight_delay")
            running = [r for r in _client(home).search_runs([experiment.experiment_id])
                       if r.info.status == "RUNNING"]
        assert running, "the training step never started its MLflow run"
        time.sleep(2)  # well inside the Optuna search
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert (_aliases(home), _versions(home)) == before
    status = _client(home).get_run(running[0].info.run_id).info.status
    assert status in ("FAILED", "KILLED")


def test_endpoint_deploys_the_champion_and_predictions_score_a_day(platform, instance):
    """From a promoted champion to a live local endpoint that answers HTTP, and a day of batch scores."""
    import requests

    from ml_platform.core.deploy import stop_local_server

    make, home = platform
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    defs = make({"serving.port": port})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    job = defs.resolve_implicit_global_asset_job_def()
    try:
        result = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["flight_delay", "endpoint"])])
        assert result.success
        metadata = _metadata(result, "endpoint")
        assert metadata["version"] == "1"
        assert metadata["smoke_test"] == {"rows": 50, "max_abs_diff": 0.0, "passed": True}
        assert metadata["url"] == f"http://127.0.0.1:{port}/v1/models/flight_delay"
        info = requests.get(metadata["url"], timeout=5).json()
        assert info["version"] == "1"
        day = (date.fromisoformat(partition) + timedelta(days=3)).isoformat()
        scored = job.execute_in_process(instance=instance, partition_key=day,
                                        asset_selection=[dg.AssetKey(["flight_delay", "predictions"])])
        assert scored.success
        frame = pd.read_parquet(home / "storage" / "flight_delay" / "predictions" / f"{day}.parquet")
        assert (frame["model_version"] == "1").all() and frame["prediction"].between(0, 1).all()
        assert frame["flight_id"].is_unique and len(frame) > 500
    finally:
        stop_local_server("flight_delay", home)


def test_drift_is_quiet_on_a_normal_day_and_fails_on_a_drifted_one(platform, instance):
    """A batch-scored normal day passes the fail check; logged live traffic with shifted inputs fails it."""
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    job = defs.resolve_implicit_global_asset_job_def()
    drift_key = dg.AssetKey(["flight_delay", "drift"])
    normal_day = (date.fromisoformat(partition) + timedelta(days=2)).isoformat()
    normal = job.execute_in_process(instance=instance, partition_key=normal_day, asset_selection=[drift_key])
    assert normal.success
    checks = {e.check_name: e for e in normal.get_asset_check_evaluations()}
    assert checks["drift_fail"].passed and checks["drift_fail"].partition == normal_day
    metadata = _metadata(normal, "drift")
    assert metadata["live_source"] == "features (batch scored)" and metadata["rows"] > 500

    # Live traffic of a later day, logged by the endpoint, with hotter weather and another carrier mix.
    drifted_day = (date.fromisoformat(partition) + timedelta(days=4)).isoformat()
    _log_drifted_traffic(home, drifted_day)
    drifted = job.execute_in_process(instance=instance, partition_key=drifted_day, asset_selection=[drift_key])
    assert drifted.success  # drift is reported by its checks, it does not fail the run
    checks = {e.check_name: e for e in drifted.get_asset_check_evaluations()}
    assert not checks["drift_fail"].passed and checks["drift_fail"].severity == dg.AssetCheckSeverity.ERROR
    over = checks["drift_fail"].metadata["features_over_threshold"].value
    assert {"carrier", "dest"} <= set(over) and "temp" not in over  # weather is ignored by the spec
    metadata = _metadata(drifted, "drift")
    assert metadata["live_source"] == "prediction log" and metadata["rows"] == 400
    assert "data:image/png;base64," in metadata["chart"]


def _log_traffic(home: Path, request_id: str, rows: pd.DataFrame, outputs, version: str = "1",
                 shadow: tuple[str, list] | None = None) -> None:
    """One answered request in the endpoint's prediction log: real feature rows (key, event time included)."""
    import json as json_module

    from ml_platform.serving.prediction_log import connect

    payload = [{k: (None if pd.isna(v) else str(v) if k == "scheduled_departure" else v) for k, v in r.items()}
               for r in rows.drop(columns=["delayed"]).to_dict("records")]
    connection = connect(home / "predictions" / "flight_delay.sqlite")
    connection.execute("INSERT INTO predictions (request_id, ts, model, version, rows, features, outputs, latency_ms, "
                       "shadow_version, shadow_outputs, routed) VALUES (?, 0, 'flight_delay', ?, ?, ?, ?, 1.0, ?, ?, "
                       "'champion')",
                       (request_id, version, len(payload), json_module.dumps(payload), json_module.dumps(list(outputs)),
                        shadow[0] if shadow else None, json_module.dumps(list(shadow[1])) if shadow else None))
    connection.close()


def _day_features(home: Path, day: str, rows: int = 500) -> pd.DataFrame:
    return pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{day}.parquet").head(rows)


def _log_drifted_traffic(home: Path, day: str, rows: int = 400) -> None:
    """A day of endpoint traffic with shifted weather and routes."""
    shifted = _day_features(home, day, rows).assign(temp=lambda f: f["temp"] + 45, carrier="WN", dest="SFO")
    _log_traffic(home, f"drift-{day}", shifted, [0.9] * len(shifted))


def test_drift_alerts_and_starts_one_retrain_per_episode(platform, instance, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    job = defs.resolve_implicit_global_asset_job_def()
    drift_key = dg.AssetKey(["flight_delay", "drift"])
    sensor = defs.resolve_sensor_def("flight_delay_retrain_on_monitoring")
    first, second = [(date.fromisoformat(partition) + timedelta(days=d)).isoformat() for d in (4, 5)]
    _log_drifted_traffic(home, first)
    assert job.execute_in_process(instance=instance, partition_key=first, asset_selection=[drift_key]).success
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    result = sensor.evaluate_tick(context)
    (request,) = result.run_requests
    assert request.tags["ml_platform/reason"] == "drift"
    assert request.tags["ml_platform/trigger"] == f"flight_delay/drift {first}"
    assert request.partition_key == _partitions(defs)[-1]
    assert [a["kind"] for a in received] == ["drift"] and received[0]["action"] == "retrain"
    assert {"carrier", "dest"} <= set(received[0]["features"]) and received[0]["partition"] == first

    # The next drifted day of the same episode alerts again but does not start a second retrain.
    _log_drifted_traffic(home, second)
    assert job.execute_in_process(instance=instance, partition_key=second, asset_selection=[drift_key]).success
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs,
                                                         cursor=result.cursor))
    assert again.run_requests == [] and "cooldown" in again.skip_message
    assert [a["action"] for a in received] == ["retrain", "cooldown"]
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor))
    assert quiet.run_requests == [] and "no new failing" in quiet.skip_message


def test_a_failed_gate_leaves_the_champion_and_alerts(platform, instance, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    partitions = _partitions(make())
    assert _retrain(make(), instance, partitions[0]).success
    failed = _retrain(make({"gates.min": 0.99}), instance, partitions[1])
    assert not failed.success and _aliases(home)["champion"] == "1"
    defs = make()
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    run = instance.get_run_by_id(failed.run_id)
    failure = next(e for e in instance.all_logs(failed.run_id) if e.dagster_event
                   and e.dagster_event.event_type_value == "PIPELINE_FAILURE")
    context = dg.build_run_status_sensor_context(sensor_name="alert_on_run_failure", dagster_instance=instance,
                                                 dagster_run=run, dagster_event=failure.dagster_event,
                                                 context=None).for_run_failure()
    sensor(context)
    (alert,) = received
    assert alert["kind"] == "gate_failed" and alert["run_id"] == failed.run_id
    assert alert["model"] == "flight_delay" and "metric_floor" in alert["reason"]


def test_automation_redeploys_the_endpoint_when_the_champion_moves(platform, instance):
    make, home = platform
    defs = make()
    endpoint = dg.AssetKey(["flight_delay", "endpoint"])
    before = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(endpoint))
    assert before.total_requested == 0  # no champion yet: nothing to deploy
    assert _retrain(defs, instance, _partitions(defs)[0]).success
    after = dg.evaluate_automation_conditions(defs=defs, instance=instance, asset_selection=dg.AssetSelection.assets(endpoint),
                                              cursor=before.cursor)
    assert after.total_requested == 1
    sensor_names = {s.name for s in defs.sensors}
    assert {"ml_platform_automation", "alert_on_run_failure", "flight_delay_retrain_on_monitoring"} <= sensor_names


def test_live_performance_joins_delayed_labels_by_key(platform, instance):
    make, home = platform
    defs = make({"monitoring.performance.floor": 0.55})
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    job = defs.resolve_implicit_global_asset_job_def()
    performance = dg.AssetKey(["flight_delay", "performance"])
    quiet_day = (date.fromisoformat(partition) + timedelta(days=1)).isoformat()
    quiet = job.execute_in_process(instance=instance, partition_key=quiet_day, asset_selection=[performance])
    assert quiet.success and _metadata(quiet, "performance")["status"] == "no traffic"
    (check,) = quiet.get_asset_check_evaluations()
    assert check.passed and "nothing to judge" in check.description

    day = (date.fromisoformat(partition) + timedelta(days=3)).isoformat()
    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    served = _day_features(home, day)
    scores = model.predict(served)
    _log_traffic(home, "r", served, scores.tolist(), shadow=("9", (1 - scores).tolist()))
    result = job.execute_in_process(instance=instance, partition_key=day, asset_selection=[performance])
    assert result.success
    metadata = _metadata(result, "performance")
    assert metadata["labelled_rows"] == 500 and metadata["label_coverage"] == 1.0
    expected = ev_roc_auc(served["delayed"], scores)
    assert abs(metadata["roc_auc"] - expected) < 1e-12
    table = pd.read_parquet(home / "storage" / "flight_delay" / "performance" / f"{day}.parquet")
    assert set(zip(table["role"], table["version"])) == {("answer", "1"), ("shadow", "9")}
    shadow_auc = table.loc[table["role"] == "shadow", "roc_auc"].iloc[0]
    assert abs(shadow_auc - (1 - expected)) < 1e-9  # the inverted shadow is exactly as bad as the answer is good
    (check,) = result.get_asset_check_evaluations()
    assert check.passed == (expected >= 0.55)

    # Live performance under the floor is a reason to retrain, like drift.
    strict = make({"monitoring.performance.floor": 0.99})
    failing = strict.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=day, asset_selection=[performance])
    (check,) = failing.get_asset_check_evaluations()
    assert not check.passed and "vs floor 0.99" in check.description
    sensor = strict.resolve_sensor_def("flight_delay_retrain_on_monitoring")
    (request,) = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=strict)).run_requests
    assert request.tags["ml_platform/reason"] == "performance"
    assert request.tags["ml_platform/trigger"] == f"flight_delay/performance {day}"


def ev_roc_auc(y, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def test_a_new_champion_worse_live_than_the_previous_is_rolled_back(platform, instance, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make({"gates.max_regression": 1.0})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success
    assert _retrain(defs, instance, partitions[1]).success
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    sensor = defs.resolve_sensor_def("flight_delay_rollback_on_regression")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    waiting = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
    assert "not enough labelled live rows" in waiting.skip_message

    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    days = [(date.fromisoformat(partitions[1]) + timedelta(days=d)).isoformat() for d in (2, 3)]
    for day, version, invert in ((days[0], "1", False), (days[1], "2", True)):
        served = _day_features(home, day)
        scores = model.predict(served)
        _log_traffic(home, day, served, (1 - scores if invert else scores).tolist(), version=version)  # v2 serves badly
        assert defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, partition_key=day, asset_selection=[dg.AssetKey(["flight_delay", "performance"])]).success
    judged = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, definitions=defs))
    (redeploy,) = judged.run_requests  # the endpoint's smoke test proves the restored version serves
    assert redeploy.asset_selection == [dg.AssetKey(["flight_delay", "endpoint"])]
    assert redeploy.tags["ml_platform/reason"] == "rollback" and redeploy.tags["ml_platform/trigger"].startswith("v2 → v1")
    assert _aliases(home) == {"champion": "1", "previous": "2"}
    history = Registry(_client(home), "flight_delay").history()
    assert history[-1]["action"] == "rollback" and history[-1]["trigger"] == "rollback_on_regression"
    (alert,) = [a for a in received if a["kind"] == "rollback"]
    assert alert["from_version"] == "2" and alert["to_version"] == "1"
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, cursor=judged.cursor))
    assert "no fresh promotion" in again.skip_message and _aliases(home)["champion"] == "1"


def _served_day(home: Path, day: str, answer: tuple[str, bool], shadow: tuple[str, bool]) -> None:
    """A day of traffic: real scores of v1's model (inverted where asked) logged as `answer` and `shadow`."""
    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    served = _day_features(home, day)
    scores = model.predict(served)
    (answer_version, answer_inverted), (shadow_version, shadow_inverted) = answer, shadow
    _log_traffic(home, f"{day}-{shadow_version}", served, (1 - scores if answer_inverted else scores).tolist(),
                 version=answer_version,
                 shadow=(shadow_version, (1 - scores if shadow_inverted else scores).tolist()))


def test_a_challenger_on_trial_is_promoted_when_it_wins_online_and_retired_when_it_loses(platform, instance,
                                                                                         webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make({"gates.max_regression": 1.0,
                 "serving.rollout": {"mode": "shadow", "window_days": 2, "min_rows": 800}})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success  # the first model has nobody to beat: champion
    trial = _retrain(defs, instance, partitions[1])
    assert trial.success and _metadata(trial, "champion")["action"] == "online-trial"
    assert _aliases(home) == {"champion": "1", "challenger": "2"}
    assert _client(home).get_model_version("flight_delay", "2").tags["gates"] == "passed"

    sensor = defs.resolve_sensor_def("flight_delay_online_challenger")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    tick = lambda cursor=None: sensor.evaluate_tick(dg.build_sensor_context(  # noqa: E731
        instance=instance, resources=resources, cursor=cursor, definitions=defs))
    assert "0 of 2 days" in tick().skip_message

    job = defs.resolve_implicit_global_asset_job_def()
    performance = dg.AssetKey(["flight_delay", "performance"])
    days = [(date.fromisoformat(partitions[1]) + timedelta(days=d)).isoformat() for d in (1, 2, 3, 4)]
    for day in days[:2]:  # v1 answers badly; v2, scoring the same requests in shadow, ranks them well
        _served_day(home, day, answer=("1", True), shadow=("2", False))
        result = job.execute_in_process(instance=instance, partition_key=day, asset_selection=[performance])
        (compared,) = _metadata(result, "performance")["challenger_comparison"]
        assert (compared["champion"], compared["challenger"], compared["rows"]) == ("1", "2", 500)
        assert compared["gain"] > 0
    decided = tick()
    (request,) = decided.run_requests
    assert request.asset_selection == [dg.AssetKey(["flight_delay", "endpoint"])]
    assert request.tags["ml_platform/reason"] == "online challenger won"
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    promotion = Registry(_client(home), "flight_delay").history()[-1]
    assert promotion["action"] == "promote" and promotion["trigger"] == "online_challenger"
    assert promotion["days"] == days[:2] and promotion["rows"] == 1000 and set(promotion["gates"]) >= {"metric_floor"}
    assert [a["kind"] for a in received] == ["challenger_promoted"]
    assert "no challenger on trial" in tick(decided.cursor).skip_message

    # The next gated model goes on trial against v2, loses on the same outcomes, and is retired.
    assert _retrain(defs, instance, partitions[2]).success
    assert _aliases(home) == {"champion": "2", "previous": "1", "challenger": "3"}
    for day in days[2:]:
        _served_day(home, day, answer=("2", False), shadow=("3", True))
        assert job.execute_in_process(instance=instance, partition_key=day, asset_selection=[performance]).success
    retired = tick()
    assert retired.run_requests == [] and "retired v3" in retired.skip_message
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    assert Registry(_client(home), "flight_delay").history()[-1]["action"] == "retire-challenger"
    assert [a["kind"] for a in received] == ["challenger_promoted", "challenger_retired"]
