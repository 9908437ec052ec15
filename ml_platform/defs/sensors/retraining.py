"""Retrain on monitoring: drift or live performance failing its check alerts, and retrains the latest week.
One sensor serves every model of the code location.

Drift and performance are read from their checks' execution records. Which records are new and failing, and
whether the cooldown since the last retrain is over, is decided by `core.retraining.RetrainCursor` (each model's
own, kept under its name in the sensor's cursor), so one episode (several failing days in a row) starts one retrain per
`monitoring.retrain_cooldown` while every failing day still alerts.

A requested retrain whose model step finds the newest registered version unchanged (a no-op: same data, spec
and training code) is not a retrain: once its run is over, the next tick gives the cooldown back, so the first
failure after new data arrives retrains at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.core.retraining import CheckRecord, RetrainCursor, RetrainOutcome, RetrainStatus
from ml_platform.defs import conventions
from ml_platform.defs.sensors.per_model import Looked, Watched, look_at_each
from ml_platform.spec import ModelSpec

HISTORY_LIMIT = 100
# On a retrain run this sensor requested: the request's id, so a later tick finds the run and its outcome.
REQUEST_TAG = "ml_platform/retrain_request"
SENSOR_NAME = "retrain_on_monitoring"


def retrain_sensor(models: Sequence[Watched]) -> dg.SensorDefinition:
    """Drift or live performance failing its check → alert, and retrain the latest partition (with cooldown),
    for every model, each with its own cursor (`core.retraining.RetrainCursor`) and its own retrain job.

    A failure alerts every time (people want to know the episode goes on) but retrains at most once per
    cooldown; a requested retrain that turned out a no-op does not count. An idle tick costs one query for
    all models: the newest evaluation of every watched check, compared with each model's cursor."""
    from ml_platform.defs.monitoring_assets import DRIFT_FAIL, PERFORMANCE_FLOOR

    watched = {
        model.name: {
            "drift": dg.AssetCheckKey(conventions.key(model.spec, "drift"), DRIFT_FAIL),
            "performance": dg.AssetCheckKey(conventions.key(model.spec, "performance"), PERFORMANCE_FLOOR),
        }
        for model in models
    }
    check_keys = [check for checks in watched.values() for check in checks.values()]

    @dg.sensor(
        name=SENSOR_NAME,
        jobs=[model.job(conventions.retrain_job_name(model.spec)) for model in models],
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"For each model ({len(models)}): when <model>/drift fails `{DRIFT_FAIL}` or "
        f"<model>/performance fails `{PERFORMANCE_FLOOR}`, alert, and run <model>_retrain on the latest "
        "partition (at most once per the model's `monitoring.retrain_cooldown`).",
    )
    def retrain_on_monitoring(context: dg.SensorEvaluationContext):
        newest = context.instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
        return look_at_each(
            context,
            models,
            lambda model, state: _look(context, model, watched[model.name], newest, state),
        )

    return retrain_on_monitoring


def _look(
    context: dg.SensorEvaluationContext,
    model: Watched,
    watched: Mapping[str, dg.AssetCheckKey],
    newest: Mapping[dg.AssetCheckKey, Any],
    state: Any,
) -> Looked:
    """One model's tick, with its own cursor: settle a pending retrain, alert on each new failure, and retrain
    once the cooldown allows."""
    spec, name = model.spec, model.name
    cursor = RetrainCursor.from_json(json.dumps(state) if state else None)
    if cursor.pending is None and all(
        (record := newest.get(check_key)) is None or record.id <= cursor.since(reason)
        for reason, check_key in watched.items()
    ):  # nothing evaluated since the last look and no retrain to follow: nothing to read
        return Looked(state, "no new failing drift or performance evaluation")
    if cursor.pending:
        request = cursor.pending.request
        outcome = _outcome(context.instance, request, conventions.key(spec, "model"))
        if cursor.settle(outcome) and outcome is RetrainStatus.NOOP:
            context.log.info(f"{name}: retrain {request} was a no-op (inputs unchanged): the cooldown is given back")
    failing = cursor.advance(
        {
            reason: _evaluations_since(context.instance, check_key, cursor.since(reason))
            for reason, check_key in watched.items()
        }
    )
    if not failing:
        return Looked(json.loads(cursor.to_json()), "no new failing drift or performance evaluation")
    reason, latest = failing[-1]
    now = time.time()
    cooldown = spec.monitoring.retrain_cooldown
    retrain = cursor.due(now, cooldown.total_seconds())
    for kind, failed in failing:
        action = (
            "retrain"
            if retrain and failed is latest
            else "cooldown"
            if not retrain
            else "retrain requested by a later failure"
        )
        _alert(spec, kind, failed.source, action, context.log)
    record = latest.source
    if not retrain:
        return Looked(
            json.loads(cursor.to_json()),
            f"{reason} failed on {record.partition}; retrain cooldown of {cooldown} still running",
        )
    request = f"{name}-{reason}-{record.id}"
    cursor.retrained(now, request)
    return Looked(
        json.loads(cursor.to_json()),
        f"{reason} failed on {record.partition}: retrain requested",
        [
            dg.RunRequest(
                run_key=request,
                job_name=conventions.retrain_job_name(spec),
                partition_key=model.training.get_last_partition_key(),
                tags={
                    conventions.REASON_TAG: reason,
                    REQUEST_TAG: request,
                    conventions.TRIGGER_TAG: f"{name}/{reason} {record.partition}",
                    **conventions.model_tags(spec),
                    conventions.DRIFTED_TAG: ",".join(_flagged_features(record))[:200],
                },
            )
        ],
    )


def _evaluations_since(instance: dg.DagsterInstance, check_key: dg.AssetCheckKey, since: int) -> list[CheckRecord]:
    """The check's evaluations after record `since`, as the cursor reads them (Dagster's record kept as
    `source`). Only a planned one needs its run looked up: finished, it will never be evaluated."""
    history = instance.event_log_storage.get_asset_check_execution_history(check_key, limit=HISTORY_LIMIT)
    return [
        CheckRecord(
            record.id,
            record.status.value,
            record.status.value != "PLANNED" or _run_finished(instance, record.run_id),
            record,
        )
        for record in history
        if record.id > since
    ]


def _outcome(instance: dg.DagsterInstance, request: str, model_key: dg.AssetKey) -> RetrainStatus:
    """What became of a requested retrain: RUNNING (no run yet, or not finished), NOOP (its model step
    reported the newest registered version unchanged) or RETRAINED (anything else, a failure included)."""
    runs = instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: request}), limit=1)
    if not runs or not runs[0].is_finished:
        return RetrainStatus.RUNNING
    for event in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.asset_materialization
        if materialization is not None and materialization.asset_key == model_key:
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            if RetrainOutcome.reported_noop(metadata):
                return RetrainStatus.NOOP
    return RetrainStatus.RETRAINED


def _run_finished(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and run.is_finished


def _flagged_features(record) -> list:
    """The features a drift evaluation flagged (none for a performance evaluation)."""
    flagged = record.event.dagster_event.event_specific_data.metadata.get("features_over_threshold")
    return flagged.value if flagged is not None else []


def _alert(spec: ModelSpec, kind: str, record, action: str, logger) -> None:
    """One alert per failing evaluation, saying what was done about it."""
    details = record.event.dagster_event.event_specific_data
    send_alert(
        {
            "kind": kind,
            "model": spec.name,
            "asset": conventions.key(spec, kind).to_user_string(),
            "run_id": record.run_id,
            "partition": record.partition,
            "features": _flagged_features(record),
            "reason": details.description,
            "action": action,
        },
        logger=logger,
    )
