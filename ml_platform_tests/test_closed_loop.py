"""The closed loop, end to end, against the real `dagster dev` (webserver and daemon) in a temporary home.

Drives it through the GraphQL API and the endpoint over HTTP: data → a week's model → a live endpoint; two
normal days of traffic (no retrain); a day of drifted traffic → the drift check fails → the drift sensor alerts
the webhook and launches a retrain tagged with its reason → the gates run → the endpoint serves the new version.
Bounded in time; every process it started is stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from ml_platform_tests.waiting import free_port, wait_for

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def platform(request, tmp_path, webhook, make_dev):
    """`make dev` on a free port with a spec whose endpoint port is free too; stopped with its process group.
    Indirect parameters override spec sections (`{"serving": {"rollout": ...}}`)."""
    ui_port, api_port = free_port(), free_port()
    home = tmp_path / "home"
    specs = tmp_path / "specs"
    specs.mkdir()
    data = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())
    data["serving"]["port"] = api_port
    data["gates"]["fairness"]["max_gap"] = 0.5  # this loop is about the mechanics, not one week's fairness
    data["gates"]["min"] = 0.55
    for section, values in getattr(request, "param", {}).items():
        data[section].update(values)
    (specs / "flight_delay.yaml").write_text(yaml.safe_dump(data))
    env = {
        **os.environ,
        "ML_PLATFORM_HOME": str(home),
        "ML_PLATFORM_SPECS": str(specs),
        "ML_PLATFORM_ALERT_WEBHOOK": webhook[0],
    }
    process = make_dev(ui_port, env)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert process.poll() is None, process.log_path.read_text()[-3000:]
            try:
                if requests.get(f"http://127.0.0.1:{ui_port}/server_info", timeout=5).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(2)
        yield ui_port, api_port, home, env
    finally:  # the endpoint the loop deployed runs in its own session
        for pid_file in (home / "serving").glob("*.pid") if (home / "serving").exists() else []:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def _wait_run(client, run_id: str, home: Path, timeout: float = 300) -> str:
    """The run's final status; a failure comes with its step errors, read from the instance's event log."""
    from dagster import DagsterInstance

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status == "SUCCESS":
            return status
        if status in ("FAILURE", "CANCELED"):
            with DagsterInstance.from_config(str(home / "dagster")) as instance:
                errors = [
                    str(e.dagster_event.event_specific_data.error.message)[:1500]
                    for e in instance.all_logs(run_id)
                    if e.dagster_event
                    and e.dagster_event.event_type_value in ("STEP_FAILURE", "PIPELINE_FAILURE")
                    and getattr(e.dagster_event.event_specific_data, "error", None)
                ]
            return f"{status}: {errors}"
        time.sleep(2)
    raise AssertionError(f"run {run_id} did not finish in {timeout} s")


def _latest_week(env: dict, home: Path, monkeypatch) -> date:
    """The latest training week of the running code location (its replay is pinned under the home)."""
    monkeypatch.setenv("ML_PLATFORM_HOME", str(home))
    from ml_platform.core.sources import open_source
    from ml_platform.defs.partitions import data_partitions, training_partitions
    from ml_platform.spec import load_specs

    (spec,) = load_specs(env["ML_PLATFORM_SPECS"])
    weeks = training_partitions(spec, data_partitions(spec, open_source(spec, home / "replay")))
    return date.fromisoformat(weeks.get_last_partition_key())


def _simulate(env: dict, endpoint: str, day: date, drift: str | None = None) -> None:
    command = [
        sys.executable,
        "-m",
        "ml_platform.cli",
        "simulate",
        "--model",
        "flight_delay",
        "--days",
        "1",
        "--start",
        day.isoformat(),
        "--url",
        endpoint,
        *(["--drift", drift] if drift else []),
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["failed"] == 0


def _info(endpoint: str) -> dict:
    return requests.get(f"{endpoint}/v1/models/flight_delay", timeout=5).json()


def _sensor_story(home: Path, name: str, last: int = 8) -> list[str]:
    """The sensor's newest ticks (status, skip reason or error), for a failure message."""
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType

    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
            if state.instigator_name == name:
                return [
                    f"{t.status.value}: {t.skip_reason or (t.error.to_string()[-600:] if t.error else '')}"
                    for t in instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=last)
                ]
    return [f"{name} never ticked"]


def _assert_sensors_ticked_cleanly(home: Path, expected: set[str]) -> None:
    """Every expected sensor ticked under the real daemon, and no sensor tick failed."""
    from dagster import DagsterInstance
    from dagster._core.scheduler.instigation import InstigatorType, TickStatus

    with DagsterInstance.from_config(str(home / "dagster")) as instance:
        ticks = {
            state.instigator_name: instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=500)
            for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR)
        }
    assert expected <= {name for name, found in ticks.items() if found}
    failed = {
        name: [t.error.to_string()[-1500:] for t in found if t.status == TickStatus.FAILURE]
        for name, found in ticks.items()
    }
    assert not any(failed.values()), failed


# The drift-triggered retrain must replace the champion: it trains the latest week, one week of data newer than
# the champion's (a retrain on the champion's own inputs would be a no-op); the gates judge mechanics here.
DRIFT = {"gates": {"max_regression": 1.0}}


@pytest.mark.parametrize("platform", [DRIFT], indirect=True)
def test_drift_triggers_retrain_gates_and_redeploy(platform, webhook, monkeypatch):
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter
    from dagster_graphql import DagsterGraphQLClient

    ui_port, api_port, home, env = platform
    _url, alerts = webhook
    client = DagsterGraphQLClient("127.0.0.1", port_number=ui_port)
    location = {"repository_location_name": "ml_platform"}

    # The latest training week (what a drift-triggered retrain trains), the week before it (the champion's) and
    # the data both windows need.
    week = _latest_week(env, home, monkeypatch)
    week_end = week + timedelta(days=6)
    first = week_end - timedelta(days=62)
    data_run = client.submit_job_execution(
        "flight_delay_data",
        **location,
        tags={
            "dagster/asset_partition_range_start": first.isoformat(),
            "dagster/asset_partition_range_end": week_end.isoformat(),
        },
    )
    assert _wait_run(client, data_run, home) == "SUCCESS"
    retrain = client.submit_job_execution(
        "flight_delay_retrain", **location, tags={"dagster/partition": (week - timedelta(days=7)).isoformat()}
    )
    assert _wait_run(client, retrain, home) == "SUCCESS"
    deploy = client.submit_job_execution("__ASSET_JOB", **location, asset_selection=[["flight_delay", "endpoint"]])
    assert _wait_run(client, deploy, home) == "SUCCESS"
    endpoint = f"http://127.0.0.1:{api_port}"
    assert _info(endpoint)["version"] == "1"

    def drift_run(day: date) -> str:
        run_id = client.submit_job_execution(
            "__ASSET_JOB",
            **location,
            asset_selection=[["flight_delay", "drift"]],
            tags={"dagster/partition": day.isoformat()},
        )
        assert _wait_run(client, run_id, home) == "SUCCESS"
        return run_id

    with DagsterInstance.from_config(str(home / "dagster")) as instance:

        def retrains() -> list:
            return [
                r
                for r in instance.get_runs(RunsFilter(job_name="flight_delay_retrain"))
                if r.tags.get("ml_platform/reason") == "drift"
            ]

        # Two normal days: traffic flows, drift stays under the fail threshold, nothing is retrained.
        for day in (week_end - timedelta(days=2), week_end - timedelta(days=1)):
            _simulate(env, endpoint, day)
            drift_run(day)
        time.sleep(40)  # more than the drift sensor's interval
        assert retrains() == []

        # A drifted day: carriers swapped around.
        drifted = week_end
        drift_logged = time.monotonic()
        _simulate(env, endpoint, drifted, "swap_carriers")
        drift_run(drifted)
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not retrains():
            time.sleep(3)
        (run,) = retrains()
        assert run.tags["ml_platform/trigger"] == f"flight_delay/drift {drifted.isoformat()}"
        assert _wait_run(client, run.run_id, home) == "SUCCESS"
        checks = {
            e.dagster_event.event_specific_data.check_name
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        assert {"metric_floor", "not_worse_than_champion", "fairness_gap", "prediction_sanity"} <= checks
        assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS

    wait_for(lambda: _info(endpoint)["version"] == "2", 120, "the endpoint serving the retrained version")
    # for its first days the new champion is answered with v1 scored beside it: rollback compares like with like
    assert _info(endpoint)["previous_scored_beside"] == "1"
    if os.environ.get("ML_PLATFORM_SCENARIO_TIMINGS"):  # read by benchmarks/monitoring.py --scenario
        Path(os.environ["ML_PLATFORM_SCENARIO_TIMINGS"]).write_text(
            json.dumps({"drifted_day_logged_to_new_version_serving_s": round(time.monotonic() - drift_logged, 1)})
        )
    drift_alerts = [a for a in alerts if a["kind"] == "drift"]
    assert drift_alerts and drift_alerts[0]["partition"] == drifted.isoformat()
    assert "carrier" in drift_alerts[0]["features"]

    _assert_sensors_ticked_cleanly(
        home,
        {
            "retrain_on_monitoring",
            "rollback_on_regression",
            "staleness_alerts",
            "alert_on_run_failure",
            "ml_platform_automation",
        },
    )


# The second week's model must reach its online trial, and no live-performance retrain may replace it meanwhile
# (the replayed day's AUC can sit under the bundled floor; retraining is the drift scenario's subject).
ONLINE = {
    "serving": {"rollout": {"mode": "shadow", "trial_days": 1, "min_rows": 100}},
    "gates": {"max_regression": 1.0},
    "monitoring": {"performance": {"metric": "roc_auc", "floor": 0.5}},
}


@pytest.mark.parametrize("platform", [ONLINE], indirect=True)
def test_a_shadow_challenger_is_judged_online_and_promoted_or_retired(platform, webhook, monkeypatch):
    """Two weeks' models: the first is champion, the second passes its gates and goes on trial in shadow; a day
    of replayed traffic with its real outcomes is compared per version, and the online sensor decides without
    a person: promoted (audited, alerted, redeployed) or retired (audited, alerted)."""
    from dagster import DagsterInstance, RunsFilter
    from dagster_graphql import DagsterGraphQLClient
    from mlflow import MlflowClient

    from ml_platform.core.registry import Registry

    ui_port, api_port, home, env = platform
    _url, alerts = webhook
    client = DagsterGraphQLClient("127.0.0.1", port_number=ui_port)
    location = {"repository_location_name": "ml_platform"}
    week = _latest_week(env, home, monkeypatch)
    previous_week, week_end = week - timedelta(days=7), week + timedelta(days=6)

    def run(job: str, **kwargs) -> None:
        assert _wait_run(client, client.submit_job_execution(job, **location, **kwargs), home) == "SUCCESS"

    run(
        "flight_delay_data",
        tags={
            "dagster/asset_partition_range_start": (week_end - timedelta(days=62)).isoformat(),
            "dagster/asset_partition_range_end": week_end.isoformat(),
        },
    )
    run("flight_delay_retrain", tags={"dagster/partition": previous_week.isoformat()})
    run("__ASSET_JOB", asset_selection=[["flight_delay", "endpoint"]])
    endpoint = f"http://127.0.0.1:{api_port}"
    run("flight_delay_retrain", tags={"dagster/partition": week.isoformat()})
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    registry = Registry(MlflowClient(tracking_uri=uri, registry_uri=uri), "flight_delay")
    assert registry.aliases() == {"champion": "1", "challenger": "2"}
    assert registry.history()[-1]["action"] == "online-trial"
    wait_for(lambda: _info(endpoint)["challenger"] == "2", 60, "the endpoint loading the gated challenger")

    _simulate(env, endpoint, week_end)  # the day's outcomes are in its features already (replayed history)
    run(
        "__ASSET_JOB",
        asset_selection=[["flight_delay", "performance"]],
        tags={"dagster/partition": week_end.isoformat()},
    )
    try:
        decision = wait_for(
            lambda: next((r for r in reversed(registry.history()) if r.get("trigger") == "online_challenger"), None),
            180,
            "the online challenger decision",
        )
    except AssertionError as error:
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            retrains = [r.tags for r in instance.get_runs(RunsFilter(job_name="flight_delay_retrain"))]
        raise AssertionError(
            f"{error}; sensor ticks: {_sensor_story(home, 'online_challenger')}; retrain runs: {retrains}"
        ) from None
    assert decision["days"] == [week_end.isoformat()] and decision["rows"] >= 100
    if decision["action"] == "promote":
        assert decision["version"] == "2" and set(decision["gates"]) >= {"metric_floor", "not_worse_than_champion"}
        assert decision["gain"] > 0
        wait_for(lambda: _info(endpoint)["version"] == "2", 180, "the endpoint serving the promoted challenger")
        with DagsterInstance.from_config(str(home / "dagster")) as instance:
            (redeploy,) = list(instance.get_runs(RunsFilter(tags={"ml_platform/reason": "online challenger won"})))
            assert _wait_run(client, redeploy.run_id, home) == "SUCCESS"
        kind = "challenger_promoted"
    else:
        assert decision["action"] == "retire-challenger" and decision["gain"] <= 0
        assert registry.aliases() == {"champion": "1"}
        wait_for(lambda: _info(endpoint)["challenger"] is None, 60, "the endpoint dropping the retired challenger")
        kind = "challenger_retired"
    assert [a["kind"] for a in alerts if a["kind"].startswith("challenger")] == [kind]
    _assert_sensors_ticked_cleanly(home, {"online_challenger", "rollback_on_regression"})
