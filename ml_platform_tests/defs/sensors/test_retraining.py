"""Retrain on monitoring against a real Dagster instance and MLflow registry: a drift episode alerts every
day and retrains once; sensors tick cleanly before any model and past checks that never ran; one sensor serves
several models, each through its own job with its own cursor.
"""

from __future__ import annotations

import json

import dagster as dg

from ml_platform.defs.sensors.retraining import retrain_sensor
from ml_platform_tests.defs.helpers import _day, _log_drifted_traffic, _materialize, _partitions, _retrain
from ml_platform_tests.defs.sensors.stand_ins import WEEKS, definitions, specs, stand_in


def _first_drift_failure(platform, instance, webhook, monkeypatch):
    """A champion on the first week, then a drifted day whose drift check fails: what the sensor sees next.
    Returns the definitions, the home, the week, the sensor, the drifted day and the one after, and the alerts."""
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make()
    partition = _partitions(defs)[0]
    assert _retrain(defs, instance, partition).success
    sensor = defs.resolve_sensor_def("retrain_on_monitoring")
    first, second = [_day(partition, d) for d in (4, 5)]
    _log_drifted_traffic(home, first)
    assert _materialize(defs, instance, "drift", first).success
    return defs, home, partition, sensor, first, second, received


def test_drift_alerts_and_starts_one_retrain_per_episode(platform, instance, webhook, monkeypatch):
    defs, home, _partition, sensor, first, second, received = _first_drift_failure(
        platform, instance, webhook, monkeypatch
    )
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    result = sensor.evaluate_tick(context)
    (request,) = result.run_requests
    assert request.job_name == "flight_delay_retrain" and request.tags["ml_platform/reason"] == "drift"
    assert request.tags["ml_platform/trigger"] == f"flight_delay/drift {first}"
    assert request.partition_key == _partitions(defs)[-1]
    assert [a["kind"] for a in received] == ["drift"] and received[0]["action"] == "retrain"
    assert {"carrier", "dest"} <= set(received[0]["features"]) and received[0]["partition"] == first

    # The next drifted day of the same episode alerts again but does not start a second retrain.
    _log_drifted_traffic(home, second)
    assert _materialize(defs, instance, "drift", second).success
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor))
    assert again.run_requests == [] and "cooldown" in again.skip_message
    assert [a["action"] for a in received] == ["retrain", "cooldown"]
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=again.cursor))
    assert quiet.run_requests == [] and "no new failing" in quiet.skip_message


def test_sensors_tick_cleanly_before_any_model_and_past_checks_that_never_ran(platform, instance, webhook, monkeypatch):
    """Before the first model the registry is empty; a drift run that failed before its checks ran leaves them
    planned forever. Neither may break a sensor, and a real failure after them is still acted on."""
    url, _received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make()
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    for name in ("rollback_on_regression", "retrain_on_monitoring"):
        result = defs.resolve_sensor_def(name).evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
        )
        assert result.run_requests == [] and result.skip_message

    partition = _partitions(defs)[0]
    early, later = [_day(partition, d) for d in (3, 4)]
    no_champion = _materialize(defs, instance, "drift", early, raise_on_error=False)
    assert not no_champion.success  # "no champion yet": the checks were planned, never evaluated
    sensor = defs.resolve_sensor_def("retrain_on_monitoring")
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert quiet.run_requests == [] and "no new failing" in quiet.skip_message

    assert _retrain(defs, instance, partition).success
    _log_drifted_traffic(home, later)
    assert _materialize(defs, instance, "drift", later).success
    (request,) = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, definitions=defs, cursor=quiet.cursor)
    ).run_requests
    assert request.tags["ml_platform/trigger"] == f"flight_delay/drift {later}"


def test_a_retrain_that_was_a_no_op_does_not_consume_the_cooldown(platform, instance, webhook, monkeypatch):
    """The requested run finds the newest version unchanged (same data, spec, code): no copy is registered and
    the next failure retrains again instead of waiting out the cooldown."""
    from ml_platform_tests.defs.helpers import _metadata, _versions

    defs, home, partition, sensor, _first, second, received = _first_drift_failure(
        platform, instance, webhook, monkeypatch
    )
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (request,) = result.run_requests
    assert json.loads(result.cursor)["flight_delay"]["pending"]["request"] == request.run_key

    # The requested run (here on the week whose inputs are unchanged) is a no-op.
    run = defs.resolve_job_def("flight_delay_retrain").execute_in_process(
        instance=instance, partition_key=partition, tags=request.tags, raise_on_error=False
    )
    assert run.success and _metadata(run, "model")["noop"] is True and _versions(home) == ["1"]

    _log_drifted_traffic(home, second)
    assert _materialize(defs, instance, "drift", second).success
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor))
    (retry,) = again.run_requests
    assert retry.tags["ml_platform/trigger"] == f"flight_delay/drift {second}"
    assert [a["action"] for a in received] == ["retrain", "retrain"]
    assert json.loads(again.cursor)["flight_delay"]["pending"]["request"] == retry.run_key


def _fail(instance: dg.DagsterInstance, model: str, kind: str, day: str) -> None:
    """A failing evaluation of a model's drift or performance check, as the checks record it."""
    check = "drift_fail" if kind == "drift" else "performance_floor"
    instance.report_runless_asset_event(
        dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey([model, kind]),
            check_name=check,
            passed=False,
            partition=day,
            metadata={"features_over_threshold": ["carrier"] if kind == "drift" else []},
            description=f"{model} {kind} failed on {day}",
        )
    )


def test_one_sensor_retrains_each_model_through_its_own_job_with_its_own_cursor(
    tmp_path, write_spec, instance, webhook, monkeypatch
):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    models = [stand_in(spec) for spec in specs(tmp_path / "specs", write_spec, ["alpha", "beta", "gamma", "delta"])]
    first_three = models[:3]
    sensor = retrain_sensor([watched for watched, _assets in first_three])
    defs = definitions(first_three, sensor)
    tick = lambda cursor=None: sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)
    )
    quiet = tick()
    assert quiet.skip_message.splitlines() == [
        f"{name}: no new failing drift or performance evaluation" for name in ("alpha", "beta", "gamma")
    ]

    _fail(instance, "beta", "drift", "2024-01-20")
    first = tick(quiet.cursor)
    (request,) = first.run_requests
    assert (request.job_name, request.partition_key) == ("beta_retrain", WEEKS.get_last_partition_key())
    assert request.run_key.startswith("beta-drift-")
    assert (
        request.tags.items()
        >= {
            "ml_platform/model": "beta",
            "ml_platform/reason": "drift",
            "ml_platform/trigger": "beta/drift 2024-01-20",
            "ml_platform/retrain_request": request.run_key,
            "ml_platform/drifted": "carrier",
        }.items()
    )
    beta = json.loads(first.cursor)["beta"]
    assert set(json.loads(first.cursor)) == {"beta"} and beta["pending"]["request"] == request.run_key

    # alpha fails its floor while beta fails again within its cooldown: alpha retrains, beta only alerts.
    _fail(instance, "alpha", "performance", "2024-01-21")
    _fail(instance, "beta", "drift", "2024-01-21")
    second = tick(first.cursor)
    (request,) = second.run_requests
    assert (request.job_name, request.tags["ml_platform/reason"]) == ("alpha_retrain", "performance")
    assert request.tags["ml_platform/model"] == "alpha" and request.run_key.startswith("alpha-performance-")
    cursors = json.loads(second.cursor)
    assert set(cursors) == {"alpha", "beta"} and cursors["beta"]["pending"] == beta["pending"]
    assert cursors["beta"]["last_id"]["drift"] > beta["last_id"]["drift"]
    assert [(a["model"], a["kind"], a["action"]) for a in received] == [
        ("beta", "drift", "retrain"),
        ("alpha", "performance", "retrain"),
        ("beta", "drift", "cooldown"),
    ]
    quiet = tick(second.cursor)
    assert quiet.run_requests == [] and "beta: no new failing" in quiet.skip_message

    # beta leaves the code location and delta joins: beta's cursor drops out, delta starts with its own.
    _fail(instance, "delta", "drift", "2024-01-22")
    later = [models[0], models[2], models[3]]
    sensor = retrain_sensor([watched for watched, _assets in later])
    defs = definitions(later, sensor)
    third = tick(quiet.cursor)
    (request,) = third.run_requests
    assert request.job_name == "delta_retrain" and request.tags["ml_platform/trigger"] == "delta/drift 2024-01-22"
    assert set(json.loads(third.cursor)) == {"alpha", "delta"}
    assert json.loads(third.cursor)["alpha"] == cursors["alpha"]
