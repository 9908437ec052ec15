"""Alerts that decide nothing: a run failed (or a blocking gate stopped it), or an asset users watch went stale
under its freshness policy and later fresh again. They only tell people; they never start runs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.defs import conventions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.defs.sensors.per_model import Looked, Watched, look_at_each
from ml_platform.spec import Freshness


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs (and failed gates) to ML_PLATFORM_ALERT_WEBHOOK; always logs. Ends as FAILED "
    "the MLflow runs a failed run left RUNNING (a killed step never ends its own).",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext, mlflow_tracking: MlflowTracking):
    """One sensor for every model: a failed run is an alert whoever owns it, and a blocking check that stopped it
    (a gate) is told apart because it means "the model was not good enough", not "the platform broke". Its MLflow
    runs still RUNNING are ended FAILED (`core.abandoned_runs`); an unreachable tracking server is logged and
    the alert still goes out."""
    run = context.dagster_run
    assets = sorted(key.to_user_string() for key in (run.asset_selection or []))
    failures = [
        f"{event.step_key}: {error.message.strip()}"
        for event in context.get_step_failure_events()
        if (error := getattr(event.event_specific_data, "error", None))
    ]
    reason = "; ".join(failures) or (context.failure_event.message or "run failed")
    send_alert(
        {
            "kind": "gate_failed" if "blocking asset check" in reason else "run_failed",
            "model": run.tags.get(conventions.MODEL_TAG),
            "asset": assets,
            "run_id": run.run_id,
            "job": run.job_name,
            "partition": run.tags.get("dagster/partition"),
            "reason": reason[:2000],
        },
        logger=context.log,
    )
    _end_abandoned(context, mlflow_tracking, run.run_id)  # after the alert: a slow tracking server delays nothing


def _end_abandoned(context: dg.RunFailureSensorContext, tracking: MlflowTracking, run_id: str) -> None:
    from ml_platform.core.abandoned_runs import end_abandoned_runs

    try:
        ended = end_abandoned_runs(tracking.client(), run_id, "FAILED", f"Dagster run {run_id} failed")
    except Exception as error:  # the tracking server down must not stop the alert
        context.log.warning(f"could not end the MLflow runs of {run_id}: {type(error).__name__}: {error}")
        return
    for found in ended:
        context.log.info(f"ended MLflow run {found.run_id} (experiment {found.experiment_id}) as FAILED")


def staleness_sensor(models: Sequence[Watched]) -> dg.SensorDefinition | None:
    """Alerts when a model's `raw`, `model` or `endpoint` turns stale (WARN or FAIL under its freshness policy)
    and when it is fresh again, for every model; None when no spec watches any of them.

    The states are Dagster's own, written by the freshness daemon (read for every model in one query), so this
    sensor judges nothing itself; each model's cursor remembers the last state change alerted per asset, so
    each change alerts once."""
    policies = {
        model.name: {
            conventions.key(model.spec, stage): policy
            for stage, policy in conventions.freshness_by_stage(model.spec).items()
            if policy is not None
        }
        for model in models
    }
    watching = [model for model in models if policies[model.name]]
    if not watching:
        return None
    keys = [key for model in watching for key in policies[model.name]]

    @dg.sensor(
        name="staleness_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"For each model with freshness policies ({len(watching)}): alerts when <model>/raw, "
        "<model>/model or <model>/endpoint go stale under their policies, and when they are fresh again.",
    )
    def staleness_alerts(context: dg.SensorEvaluationContext):
        records = context.instance.get_freshness_state_records(keys)
        return look_at_each(
            context,
            watching,
            lambda model, seen: _alert_changes(context, model.name, policies[model.name], records, seen or {}),
        )

    return staleness_alerts


def _alert_changes(
    context: dg.SensorEvaluationContext,
    name: str,
    policies: Mapping[dg.AssetKey, Freshness],
    records: Mapping[dg.AssetKey, Any],
    seen: dict[str, str],
) -> Looked:
    """One model's freshness changes since its cursor (`{asset: "STATE@since"}`), each alerted once."""
    sent = []
    for key, policy in policies.items():
        record = records.get(key)
        if record is None:
            continue
        asset = key.to_user_string()
        state = record.freshness_state.value
        mark = f"{state}@{record.updated_at.isoformat()}"
        before = seen.get(asset, "").split("@")[0]
        if seen.get(asset) == mark:
            continue
        seen[asset] = mark
        if state in ("WARN", "FAIL") or (state == "PASS" and before in ("WARN", "FAIL")):
            send_alert(
                {
                    "kind": "stale" if state != "PASS" else "fresh_again",
                    "model": name,
                    "asset": asset,
                    "run_id": None,
                    "state": state,
                    "since": record.updated_at.isoformat(),
                    "reason": _staleness_reason(asset, state, policy),
                },
                logger=context.log,
            )
            sent.append(f"{asset} {state}")
    return Looked(seen or None, f"alerted: {', '.join(sent)}" if sent else "no freshness change to alert")


def _staleness_reason(asset: str, state: str, policy: Freshness) -> str:
    """The policy in words, so whoever is paged knows what "stale" meant for this asset."""
    return (
        f"{asset} is {state}: its freshness policy "
        + (f"warns after {policy.warn_after} and " if policy.warn_after else "")
        + f"fails after {policy.fail_after} without a materialization"
    )
