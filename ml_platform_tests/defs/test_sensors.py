"""Sensors against a real Dagster instance and MLflow registry: retrain on drift, alerts, rollback, online
champion/challenger, staleness from the freshness daemon's own states.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import dagster as dg
import mlflow

from ml_platform.core.model import Model
from ml_platform.core.registry import Registry
from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec
from ml_platform_tests.defs.helpers import (_aliases, _client, _day, _day_features, _log_drifted_traffic,
                                            _log_traffic, _materialize, _metadata, _partitions, _retrain, _served_day)


def test_drift_alerts_and_starts_one_retrain_per_episode(platform, instance, webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    sensor = defs.resolve_sensor_def("flight_delay_retrain_on_monitoring")
    first, second = [_day(partition, d) for d in (4, 5)]
    _log_drifted_traffic(home, first)
    assert _materialize(defs, instance, "drift", first).success
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
    assert _materialize(defs, instance, "drift", second).success
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs,
                                                         cursor=result.cursor))
    assert again.run_requests == [] and "cooldown" in again.skip_message
    assert [a["action"] for a in received] == ["retrain", "cooldown"]
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor))
    assert quiet.run_requests == [] and "no new failing" in quiet.skip_message


def test_sensors_tick_cleanly_before_any_model_and_past_checks_that_never_ran(platform, instance, webhook,
                                                                              monkeypatch):
    """Before the first model the registry is empty; a drift run that failed before its checks ran leaves them
    planned forever. Neither may break a sensor, and a real failure after them is still acted on."""
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make()
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    for name in ("flight_delay_rollback_on_regression", "flight_delay_retrain_on_monitoring"):
        result = defs.resolve_sensor_def(name).evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources, definitions=defs))
        assert result.run_requests == [] and result.skip_message

    partition = _partitions(defs)[0]
    early, later = [_day(partition, d) for d in (3, 4)]
    no_champion = _materialize(defs, instance, "drift", early,
                                         raise_on_error=False)
    assert not no_champion.success  # "no champion yet": the checks were planned, never evaluated
    sensor = defs.resolve_sensor_def("flight_delay_retrain_on_monitoring")
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert quiet.run_requests == [] and "no new failing" in quiet.skip_message

    assert _retrain(defs, instance, partition).success
    _log_drifted_traffic(home, later)
    assert _materialize(defs, instance, "drift", later).success
    (request,) = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs,
                                                              cursor=quiet.cursor)).run_requests
    assert request.tags["ml_platform/trigger"] == f"flight_delay/drift {later}"


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
    days = [_day(partitions[1], d) for d in (2, 3)]
    for day, version, invert in ((days[0], "1", False), (days[1], "2", True)):
        served = _day_features(home, day)
        scores = model.predict(served)
        _log_traffic(home, day, served, (1 - scores if invert else scores).tolist(), version=version)  # v2 serves badly
        assert _materialize(defs, instance, "performance", day).success
    judged = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, definitions=defs))
    (redeploy,) = judged.run_requests  # the endpoint's smoke test proves the restored version serves
    assert redeploy.asset_selection == [dg.AssetKey(["flight_delay", "endpoint"])]
    assert redeploy.tags["ml_platform/reason"] == "rollback"
    assert redeploy.tags["ml_platform/trigger"].startswith("v2 → v1")
    assert _aliases(home) == {"champion": "1", "previous": "2"}
    history = Registry(_client(home), "flight_delay").history()
    assert history[-1]["action"] == "rollback" and history[-1]["trigger"] == "rollback_on_regression"
    (alert,) = [a for a in received if a["kind"] == "rollback"]
    assert alert["from_version"] == "2" and alert["to_version"] == "1"
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, cursor=judged.cursor))
    assert "no fresh promotion" in again.skip_message and _aliases(home)["champion"] == "1"


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

    days = [_day(partitions[1], d) for d in (1, 2, 3, 4)]
    for day in days[:2]:  # v1 answers badly; v2, scoring the same requests in shadow, ranks them well
        _served_day(home, day, answer=("1", True), shadow=("2", False))
        result = _materialize(defs, instance, "performance", day)
        (compared,) = _metadata(result, "performance")["paired_comparison"]
        assert (compared["champion"], compared["other"], compared["rows"]) == ("1", "2", 500)
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
        assert _materialize(defs, instance, "performance", day).success
    retired = tick()
    assert retired.run_requests == [] and "retired v3" in retired.skip_message
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    assert Registry(_client(home), "flight_delay").history()[-1]["action"] == "retire-challenger"
    assert [a["kind"] for a in received] == ["challenger_promoted", "challenger_retired"]


def _evaluate_freshness(instance: dg.DagsterInstance, at: datetime) -> None:
    """One iteration of Dagster's freshness daemon over the real code location, with the clock at `at`."""
    from dagster._core.test_utils import (
        create_test_daemon_workspace_context,
        freeze_time,
    )
    from dagster._core.workspace.load_target import ModuleTarget
    from dagster._daemon.freshness import FreshnessDaemon

    target = ModuleTarget(module_name="ml_platform.definitions", attribute="defs", working_directory=None,
                          location_name="ml_platform")
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
    materialize = lambda: defs.resolve_implicit_global_asset_job_def().execute_in_process(  # noqa: E731
        instance=instance, partition_key=day, asset_selection=[raw])
    assert materialize().success
    sensor = defs.resolve_sensor_def("flight_delay_staleness_alerts")
    tick = lambda cursor=None: sensor.evaluate_tick(  # noqa: E731
        dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs))

    now = datetime.now(timezone.utc)
    _evaluate_freshness(instance, now)
    fresh = tick()
    assert received == [] and "no freshness change" in fresh.skip_message

    _evaluate_freshness(instance, now + timedelta(hours=30))  # raw warns after 26h, fails after 50h
    warned = tick(fresh.cursor)
    _evaluate_freshness(instance, now + timedelta(hours=60))
    failed = tick(warned.cursor)
    assert [(a["kind"], a["asset"], a["state"]) for a in received] == [
        ("stale", "flight_delay/raw", "WARN"), ("stale", "flight_delay/raw", "FAIL")]
    assert received[-1]["reason"].endswith("warns after 1 day, 2:00:00 and fails after 2 days, 2:00:00 without a "
                                          "materialization")
    assert "no freshness change" in tick(failed.cursor).skip_message  # one alert per change

    assert materialize().success
    _evaluate_freshness(instance, datetime.now(timezone.utc))
    tick(failed.cursor)
    assert [a["kind"] for a in received] == ["stale", "stale", "fresh_again"]


def test_a_rollback_judges_both_champions_on_the_same_requests(platform, instance, webhook, monkeypatch):
    """While a new champion is fresh the endpoint scores the previous one beside it; the rollback decision
    compares the two on those same labelled requests."""
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make({"gates.max_regression": 1.0, "monitoring.performance.rollback_tolerance": 0.0,
                 "monitoring.performance.rollback_min_rows": 400})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success and _retrain(defs, instance, partitions[1]).success
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    sensor = defs.resolve_sensor_def("flight_delay_rollback_on_regression")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    tick = lambda: sensor.evaluate_tick(  # noqa: E731
        dg.build_sensor_context(instance=instance, resources=resources, definitions=defs))
    first, second = [_day(partitions[1], d) for d in (2, 3)]

    _served_day(home, first, answer=("2", False), shadow=("1", False))  # both score alike: keep v2
    assert _materialize(defs, instance, "performance", first).success
    kept = tick()
    assert kept.run_requests == [] and "v2 kept" in kept.skip_message
    assert "on the same 500 labelled requests" in kept.skip_message

    _served_day(home, second, answer=("2", True), shadow=("1", False))  # v2 ranks the next day's outcomes badly
    assert _materialize(defs, instance, "performance", second).success
    (redeploy,) = tick().run_requests
    assert "on the same 1000 labelled requests" in redeploy.tags["ml_platform/trigger"]
    assert _aliases(home) == {"champion": "1", "previous": "2"}
    assert [a["kind"] for a in received] == ["rollback"]
