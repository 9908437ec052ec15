"""Registry decisions taken on live outcomes: roll a regressing new champion back, and promote or retire a
challenger on trial online. Both read `<model>/performance`'s daily paired comparisons (two versions scored
on the same labelled requests), let a pure judge in `core.performance` decide, then act: move the registry's
aliases (audited), alert, and redeploy the endpoint so the version the registry names is the one serving.
"""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.core.evaluation import DEFAULT_METRIC
from ml_platform.core.performance import judge_challenger, judge_rollback
from ml_platform.defs import conventions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec


def rollback_sensor(spec: ModelSpec) -> dg.SensorDefinition:
    """Automatic rollback: a new champion whose live metric trails the previous champion's by more than
    `monitoring.performance.rollback_tolerance` within `rollback_window` of its promotion goes back to
    `previous`, audited and alerted, and the endpoint is redeployed.

    The endpoint scores the previous champion beside a new one for that window, so the two are compared on the
    same requests and outcomes (`<model>/performance`'s paired comparison). Where no such pairs exist (an image
    carries one model), it falls back to each version's metric on the days it answered. Each promotion is
    judged once: a kept champion is not second-guessed later by this sensor.
    """
    name = spec.name
    settings = spec.monitoring.performance
    metric = settings.metric or DEFAULT_METRIC[spec.task]
    tolerance, window, min_rows = settings.rollback_tolerance, settings.rollback_window, settings.rollback_min_rows

    @dg.sensor(
        name=f"{name}_rollback_on_regression",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[conventions.key(spec, "endpoint")],
        description=f"Rolls {name} back to `previous` when the new champion's live {metric} trails it by "
        f"more than {tolerance} within {window} of its promotion.",
    )
    def rollback_on_regression(context: dg.SensorEvaluationContext, mlflow_tracking: MlflowTracking):
        registry = mlflow_tracking.registry(name)
        promotions = [r for r in registry.history() if r["action"] in ("promote", "rollback")]
        if not promotions or promotions[-1]["action"] != "promote" or not promotions[-1].get("from_version"):
            return dg.SkipReason("no fresh promotion with a previous champion to compare against")
        last = promotions[-1]
        champion, previous = str(last["version"]), str(last["from_version"])
        judged = f"{champion}:{last['at']}"
        if context.cursor == judged:
            return dg.SkipReason(f"v{champion} already judged")
        if datetime.now(UTC) - datetime.fromisoformat(last["at"]) > window:
            context.update_cursor(judged)
            return dg.SkipReason(f"v{champion} is past its first {window}")
        days = latest_per_day(context.instance, conventions.key(spec, "performance"))
        verdict = judge_rollback(
            paired_days(days, champion, previous),
            [d.get("answered_by_version", {}) for d in days.values()],
            champion,
            previous,
            metric,
            tolerance,
            min_rows,
        )
        if verdict.decision == "wait":
            return dg.SkipReason(verdict.reason)
        context.update_cursor(judged)
        if verdict.decision == "keep":
            return dg.SkipReason(verdict.reason)
        record = registry.rollback(verdict.reason, {"trigger": "rollback_on_regression", "metric": metric})
        send_alert(
            {
                "kind": "rollback",
                "model": name,
                "asset": _champion_asset(spec),
                "run_id": None,
                "from_version": champion,
                "to_version": record["version"],
                "reason": verdict.reason,
            },
            logger=context.log,
        )
        return _redeploy(spec, "rollback", f"v{champion} → v{record['version']}: {verdict.reason}")

    return rollback_on_regression


def online_challenger_sensor(spec: ModelSpec) -> dg.SensorDefinition | None:
    """Online champion/challenger: a gated challenger served in shadow or canary is judged on the same live
    outcomes as the champion (`<model>/performance`'s paired comparison, per day). Over the spec's window it is
    promoted through the offline gates' record and the audit trail, then deployed; or it is retired. None when
    the spec rolls out without a trial (`serving.rollout.mode: none`)."""
    from ml_platform.core.registry import RegistryError

    rollout = spec.serving.rollout
    if rollout.mode == "none":
        return None
    name = spec.name

    @dg.sensor(
        name=f"{name}_online_challenger",
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        target=[conventions.key(spec, "endpoint")],
        description=f"Promotes the {rollout.mode} challenger of {name} when it beats the champion on the "
        f"same live outcomes over {rollout.trial_days} days ({rollout.min_rows}+ labelled "
        f"rows, gain ≥ {rollout.min_improvement}); retires it when it does not.",
    )
    def online_challenger(context: dg.SensorEvaluationContext, mlflow_tracking: MlflowTracking):
        registry = mlflow_tracking.registry(name)
        champion, challenger = registry.version_of("champion"), registry.version_of("challenger")
        if champion is None or challenger is None or champion == challenger:
            return dg.SkipReason("no challenger on trial")
        if context.cursor == f"{champion}:{challenger}":
            return dg.SkipReason(f"v{challenger} against v{champion} already decided")
        paired = paired_days(
            latest_per_day(context.instance, conventions.key(spec, "performance")), champion, challenger
        )
        verdict = judge_challenger(paired, rollout.trial_days, rollout.min_rows, rollout.min_improvement)
        if verdict.decision == "wait":
            return dg.SkipReason(f"v{challenger} against v{champion}: {verdict.reason}")
        context.update_cursor(f"{champion}:{challenger}")
        evidence = {
            "trigger": "online_challenger",
            "mode": rollout.mode,
            "gain": verdict.gain,
            "rows": verdict.rows,
            "days": list(verdict.days),
            "champion": champion,
        }
        if verdict.decision == "retire":
            record = registry.retire_challenger(verdict.reason, evidence)
            send_alert(
                {
                    "kind": "challenger_retired",
                    "model": name,
                    "asset": _champion_asset(spec),
                    "run_id": None,
                    "version": challenger,
                    "champion": champion,
                    "reason": verdict.reason,
                },
                logger=context.log,
            )
            return dg.SkipReason(f"retired v{record['version']}: {verdict.reason}")
        try:
            record = registry.promote_gated(challenger, verdict.reason, evidence)
        except RegistryError as error:
            send_alert(
                {
                    "kind": "challenger_blocked",
                    "model": name,
                    "asset": _champion_asset(spec),
                    "run_id": None,
                    "version": challenger,
                    "reason": str(error),
                },
                logger=context.log,
            )
            return dg.SkipReason(str(error))
        send_alert(
            {
                "kind": "challenger_promoted",
                "model": name,
                "asset": _champion_asset(spec),
                "run_id": None,
                "version": challenger,
                "from_version": champion,
                "reason": verdict.reason,
            },
            logger=context.log,
        )
        return _redeploy(spec, "online challenger won", f"v{champion} → v{record['version']}: {verdict.reason}")

    return online_challenger


def latest_per_day(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int = 500) -> dict[str, dict]:
    """The metadata of each partition's newest materialization: a day evaluated again counts once."""
    latest: dict[str, dict] = {}
    for record in instance.fetch_materializations(key, limit=limit).records:  # newest first
        materialization = record.asset_materialization
        if record.partition_key is None or materialization is None:  # not a day's materialization
            continue
        latest.setdefault(record.partition_key, {k: v.value for k, v in materialization.metadata.items()})
    return latest


def paired_days(days: dict[str, dict], champion: str, other: str) -> list[dict]:
    """Each day's paired comparison of `champion` with `other` (from `<model>/performance`)."""
    return [
        {"day": day, **entry}
        for day, metadata in days.items()
        for entry in metadata.get("paired_comparison", [])
        if (entry["champion"], entry["other"]) == (champion, other)
    ]


def _champion_asset(spec: ModelSpec) -> str:
    """What a registry decision's alert points at: the model's champion asset."""
    return conventions.key(spec, "champion").to_user_string()


def _redeploy(spec: ModelSpec, reason: str, trigger: str) -> dg.RunRequest:
    """Deploy the champion the registry now names: the endpoint's smoke test proves it serves."""
    return dg.RunRequest(
        asset_selection=[conventions.key(spec, "endpoint")],
        tags={conventions.REASON_TAG: reason, conventions.TRIGGER_TAG: trigger[:200], **conventions.model_tags(spec)},
    )
