"""Alerts against a real Dagster instance and MLflow registry: a failed gate, and staleness from the freshness
daemon's own states.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec
from ml_platform_tests.defs.helpers import _aliases, _client, _partitions, _retrain


def test_a_failed_gate_leaves_the_champion_and_alerts(platform, instance, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    partitions = _partitions(make())
    assert _retrain(make(), instance, partitions[0]).success
    failed = _retrain(make({"gates.min": 0.99}), instance, partitions[1])
    assert not failed.success and _aliases(home)["champion"] == "1"
    # a step killed mid-run leaves its MLflow run RUNNING: one of the failed run's, and one of another run's
    client = _client(home)
    experiment = client.get_experiment_by_name("ml_platform/flight_delay").experiment_id
    abandoned = client.create_run(experiment, tags={"dagster_run_id": failed.run_id}).info.run_id
    elsewhere = client.create_run(experiment, tags={"dagster_run_id": "another-run"}).info.run_id
    finished = {r.info.run_id: r.info.status for r in client.search_runs([experiment]) if r.info.status != "RUNNING"}
    defs = make()
    sensor = defs.resolve_sensor_def("alert_on_run_failure")
    run = instance.get_run_by_id(failed.run_id)
    failure = next(
        e
        for e in instance.all_logs(failed.run_id)
        if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_FAILURE"
    )
    context = dg.build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=failure.dagster_event,
        context=None,
        resources={"mlflow_tracking": defs.resources["mlflow_tracking"]},
    ).for_run_failure()
    sensor(context)
    ended = client.get_run(abandoned)
    assert ended.info.status == "FAILED" and failed.run_id in ended.data.tags["ml_platform.ended_by"]
    assert client.get_run(elsewhere).info.status == "RUNNING"  # not this run's
    assert {r: client.get_run(r).info.status for r in finished} == finished  # ended runs keep their status
    (alert,) = received
    assert alert["kind"] == "gate_failed" and alert["run_id"] == failed.run_id
    assert alert["model"] == "flight_delay" and "metric_floor" in alert["reason"]


def _evaluate_freshness(instance: dg.DagsterInstance, at: datetime) -> None:
    """One iteration of Dagster's freshness daemon over the real code location, with the clock at `at`."""
    from dagster._core.test_utils import (
        create_test_daemon_workspace_context,
        freeze_time,
    )
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.freshness import FreshnessDaemon

    target = ModuleTarget(
        module_name="ml_platform.definitions", attribute="defs", working_directory=None, location_name="ml_platform"
    )
    with create_test_daemon_workspace_context(target, instance) as workspace, freeze_time(at):
        list(FreshnessDaemon().run_iteration(workspace))


def test_a_stale_asset_alerts_once_and_again_when_fresh(home, instance, tmp_path, write_spec, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    specs = tmp_path / "specs"
    spec_file = write_spec(specs, {"source.offset_weeks": 600}, name="flight_delay.yaml")
    monkeypatch.setenv("ML_PLATFORM_SPECS", str(specs))
    defs = build_definitions([load_spec(spec_file)])
    raw = dg.AssetKey(["flight_delay", "raw"])
    day = (date(2013, 1, 1) + timedelta(weeks=600, days=7)).isoformat()
    materialize = lambda: defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=day, asset_selection=[raw]
    )
    assert materialize().success
    sensor = defs.resolve_sensor_def("staleness_alerts")
    tick = lambda cursor=None: sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    )

    now = datetime.now(UTC)
    _evaluate_freshness(instance, now)
    fresh = tick()
    assert received == [] and fresh.skip_message == "flight_delay: no freshness change to alert"

    _evaluate_freshness(instance, now + timedelta(hours=30))  # raw warns after 26h, fails after 50h
    warned = tick(fresh.cursor)
    _evaluate_freshness(instance, now + timedelta(hours=60))
    failed = tick(warned.cursor)
    assert [(a["kind"], a["asset"], a["state"]) for a in received] == [
        ("stale", "flight_delay/raw", "WARN"),
        ("stale", "flight_delay/raw", "FAIL"),
    ]
    assert received[-1]["reason"].endswith(
        "warns after 1 day, 2:00:00 and fails after 2 days, 2:00:00 without a materialization"
    )
    assert "no freshness change" in tick(failed.cursor).skip_message  # one alert per change
    cursor = json.loads(failed.cursor)  # keyed by model: the model's own cursor
    assert list(cursor) == ["flight_delay"] and cursor["flight_delay"]["flight_delay/raw"].startswith("FAIL@")

    assert materialize().success
    _evaluate_freshness(instance, datetime.now(UTC))
    tick(failed.cursor)
    assert [a["kind"] for a in received] == ["stale", "stale", "fresh_again"]
