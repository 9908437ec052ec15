"""Retrain on monitoring against a real Dagster instance and MLflow registry: a drift episode alerts every
day and retrains once; sensors tick cleanly before any model and past checks that never ran.
"""

from __future__ import annotations

import dagster as dg

from ml_platform_tests.defs.helpers import _day, _log_drifted_traffic, _materialize, _partitions, _retrain


def _first_drift_failure(platform, instance, webhook, monkeypatch):
    """A champion on the first week, then a drifted day whose drift check fails: what the sensor sees next.
    Returns the definitions, the home, the week, the sensor, the drifted day and the one after, and the alerts."""
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
    return defs, home, partition, sensor, first, second, received


def test_drift_alerts_and_starts_one_retrain_per_episode(platform, instance, webhook, monkeypatch):
    defs, home, _partition, sensor, first, second, received = _first_drift_failure(
        platform, instance, webhook, monkeypatch
    )
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
    for name in ("flight_delay_rollback_on_regression", "flight_delay_retrain_on_monitoring"):
        result = defs.resolve_sensor_def(name).evaluate_tick(
            dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
        )
        assert result.run_requests == [] and result.skip_message

    partition = _partitions(defs)[0]
    early, later = [_day(partition, d) for d in (3, 4)]
    no_champion = _materialize(defs, instance, "drift", early, raise_on_error=False)
    assert not no_champion.success  # "no champion yet": the checks were planned, never evaluated
    sensor = defs.resolve_sensor_def("flight_delay_retrain_on_monitoring")
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
    import json

    from ml_platform_tests.defs.helpers import _metadata, _versions

    defs, home, partition, sensor, _first, second, received = _first_drift_failure(
        platform, instance, webhook, monkeypatch
    )
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    (request,) = result.run_requests
    assert json.loads(result.cursor)["pending"]["request"] == request.run_key

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
    assert json.loads(again.cursor)["pending"]["request"] == retry.run_key
