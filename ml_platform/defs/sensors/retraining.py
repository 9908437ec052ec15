"""Retrain on monitoring: drift or live performance failing its check alerts, and retrains the latest week.

Drift and performance are read from their checks' execution records. Which records are new and failing, and
whether the cooldown since the last retrain is over, is decided by `core.retraining.RetrainCursor` (stored as
the sensor's cursor), so one episode (several failing days in a row) starts one retrain per
`monitoring.retrain_cooldown` while every failing day still alerts.

A requested retrain whose model step finds the newest registered version unchanged (a no-op: same data, spec
and training code) is not a retrain: once its run is over, the next tick gives the cooldown back, so the first
failure after new data arrives retrains at once.
"""

from __future__ import annotations

import time

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.core.retraining import CheckRecord, RetrainCursor
from ml_platform.defs import conventions
from ml_platform.defs.monitoring_assets import DRIFT_FAIL, PERFORMANCE_FLOOR
from ml_platform.spec import ModelSpec

HISTORY_LIMIT = 100
# On a retrain run this sensor requested: the request's id, so a later tick finds the run and its outcome.
REQUEST_TAG = "ml_platform/retrain_request"


def retrain_sensor(spec: ModelSpec, training: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """Drift or live performance failing its check → alert, and retrain the latest week (with cooldown).

    A failure alerts every time (people want to know the episode goes on) but retrains at most once per
    cooldown; a requested retrain that turned out a no-op does not count."""
    name = spec.name
    watched = {
        "drift": dg.AssetCheckKey(conventions.key(spec, "drift"), DRIFT_FAIL),
        "performance": dg.AssetCheckKey(conventions.key(spec, "performance"), PERFORMANCE_FLOOR),
    }
    cooldown = spec.monitoring.retrain_cooldown
    model_key = conventions.key(spec, "model")

    @dg.sensor(
        name=f"{name}_retrain_on_monitoring",
        job_name=conventions.retrain_job_name(spec),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"When {name}/drift fails `{DRIFT_FAIL}` or {name}/performance fails "
        f"`{PERFORMANCE_FLOOR}`: alert, and retrain the latest week (at most once per "
        f"{cooldown}).",
    )
    def retrain_on_monitoring(context: dg.SensorEvaluationContext):
        cursor = RetrainCursor.from_json(context.cursor)
        if cursor.pending:
            request, outcome = (
                cursor.pending["request"],
                _outcome(context.instance, cursor.pending["request"], model_key),
            )
            if cursor.settle(outcome) and outcome == "noop":
                context.log.info(f"retrain {request} was a no-op (inputs unchanged): the cooldown is given back")
        failing = cursor.advance(
            {
                reason: _evaluations_since(context.instance, check_key, cursor.since(reason))
                for reason, check_key in watched.items()
            }
        )
        if not failing:
            context.update_cursor(cursor.to_json())
            return dg.SkipReason("no new failing drift or performance evaluation")
        reason, latest = failing[-1]
        now = time.time()
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
            context.update_cursor(cursor.to_json())
            return dg.SkipReason(f"{reason} failed on {record.partition}; retrain cooldown of {cooldown} still running")
        request = f"{reason}-{record.id}"
        cursor.retrained(now, request)
        context.update_cursor(cursor.to_json())
        return dg.RunRequest(
            run_key=request,
            partition_key=training.get_last_partition_key(),
            tags={
                conventions.REASON_TAG: reason,
                REQUEST_TAG: request,
                conventions.TRIGGER_TAG: f"{name}/{reason} {record.partition}",
                **conventions.model_tags(spec),
                conventions.DRIFTED_TAG: ",".join(_flagged_features(record))[:200],
            },
        )

    return retrain_on_monitoring


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


def _outcome(instance: dg.DagsterInstance, request: str, model_key: dg.AssetKey) -> str:
    """What became of a requested retrain: "running" (no run yet, or not finished), "noop" (its model step
    reported the newest registered version unchanged) or "retrained" (anything else, a failure included)."""
    runs = instance.get_runs(dg.RunsFilter(tags={REQUEST_TAG: request}), limit=1)
    if not runs or not runs[0].is_finished:
        return "running"
    for event in instance.all_logs(runs[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION):
        materialization = event.asset_materialization
        if materialization is not None and materialization.asset_key == model_key:
            noop = materialization.metadata.get("noop")
            if noop is not None and noop.value is True:
                return "noop"
    return "retrained"


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
