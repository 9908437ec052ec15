"""Alerts that decide nothing: a run failed (or a blocking gate stopped it), or an asset users watch went stale
under its freshness policy and later fresh again. They only tell people; they never start runs."""

from __future__ import annotations

import json

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.defs import conventions
from ml_platform.spec import Freshness, ModelSpec


@dg.run_failure_sensor(
    name="alert_on_run_failure",
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Posts failed runs (and failed gates) to ML_PLATFORM_ALERT_WEBHOOK; always logs.",
)
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    """One sensor for every model: a failed run is an alert whoever owns it, and a blocking check that stopped it
    (a gate) is told apart because it means "the model was not good enough", not "the platform broke"."""
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


def staleness_sensor(spec: ModelSpec) -> dg.SensorDefinition | None:
    """Alerts when `raw`, `model` or `endpoint` turns stale (WARN or FAIL under its freshness policy) and when
    it is fresh again; None when the spec watches none of them.

    The states are Dagster's own, written by the freshness daemon, so this sensor judges nothing itself; the
    cursor remembers the last state change alerted per asset, so each change alerts once."""
    name = spec.name
    policies = {
        conventions.key(spec, stage): policy
        for stage, policy in conventions.freshness_by_stage(spec).items()
        if policy is not None
    }
    keys = list(policies)
    if not keys:
        return None

    @dg.sensor(
        name=f"{name}_staleness_alerts",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Alerts when {', '.join(k.to_user_string() for k in keys)} go stale under their "
        "freshness policies, and when they are fresh again.",
    )
    def staleness_alerts(context: dg.SensorEvaluationContext):
        seen = json.loads(context.cursor) if context.cursor else {}
        sent = []
        for key, record in context.instance.get_freshness_state_records(keys).items():
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
                        "reason": _staleness_reason(asset, state, policies[key]),
                    },
                    logger=context.log,
                )
                sent.append(f"{asset} {state}")
        context.update_cursor(json.dumps(seen))
        return dg.SkipReason(f"alerted: {', '.join(sent)}" if sent else "no freshness change to alert")

    return staleness_alerts


def _staleness_reason(asset: str, state: str, policy: Freshness) -> str:
    """The policy in words, so whoever is paged knows what "stale" meant for this asset."""
    return (
        f"{asset} is {state}: its freshness policy "
        + (f"warns after {policy.warn_after} and " if policy.warn_after else "")
        + f"fails after {policy.fail_after} without a materialization"
    )
