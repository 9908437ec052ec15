"""Sensors that close the loop: alert on failed runs; retrain (once per episode) when drift or live
performance fails; roll a regressing champion back; promote or retire a challenger on trial online;
materialize a day when its file lands.

All run by default under `dagster dev`. Drift and performance are read from their checks' execution records;
the cursor remembers the last record seen per check and the time of the last retrain, so one episode (several
failing days in a row) starts one retrain per `monitoring.retrain_cooldown`.
"""

import json
import time
from datetime import datetime, timezone

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.defs.monitoring_assets import DRIFT_FAIL, PERFORMANCE_FLOOR
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec

REASON_TAG = "ml_platform/reason"
TRIGGER_TAG = "ml_platform/trigger"


@dg.run_failure_sensor(name="alert_on_run_failure", default_status=dg.DefaultSensorStatus.RUNNING,
                       description="Posts failed runs (and failed gates) to ML_PLATFORM_ALERT_WEBHOOK; always logs.")
def alert_on_run_failure(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    assets = sorted(key.to_user_string() for key in (run.asset_selection or []))
    failures = [f"{event.step_key}: {event.event_specific_data.error.message.strip()}"
                for event in context.get_step_failure_events()
                if event.event_specific_data and getattr(event.event_specific_data, "error", None)]
    reason = "; ".join(failures) or (context.failure_event.message or "run failed")
    send_alert({"kind": "gate_failed" if "blocking asset check" in reason else "run_failed",
                "model": run.tags.get("ml_platform/model"), "asset": assets, "run_id": run.run_id,
                "job": run.job_name, "partition": run.tags.get("dagster/partition"), "reason": reason[:2000]},
               logger=context.log)


def build_retrain_sensor(spec: ModelSpec, retrain_job: str, training: dg.PartitionsDefinition) -> dg.SensorDefinition:
    """Drift or live performance failing its check → alert, and retrain the latest week (with cooldown)."""
    name = spec.name
    watched = {"drift": dg.AssetCheckKey(dg.AssetKey([name, "drift"]), DRIFT_FAIL),
               "performance": dg.AssetCheckKey(dg.AssetKey([name, "performance"]), PERFORMANCE_FLOOR)}
    cooldown = spec.monitoring.retrain_cooldown.total_seconds()

    @dg.sensor(name=f"{name}_retrain_on_monitoring", job_name=retrain_job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"When {name}/drift fails `{DRIFT_FAIL}` or {name}/performance fails "
                           f"`{PERFORMANCE_FLOOR}`: alert, and retrain the latest week (at most once per "
                           f"{spec.monitoring.retrain_cooldown}).")
    def retrain_on_monitoring(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {}
        seen = state.get("last_id", {})
        failing = []
        for reason, check_key in watched.items():
            # every resolved evaluation since the cursor, oldest first: a passing day evaluated later must not
            # hide a failure, and one still running is looked at again next tick
            history = context.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
            for record in sorted((r for r in history if r.id > seen.get(reason, 0)), key=lambda r: r.id):
                if record.status.value == "PLANNED":
                    run = context.instance.get_run_by_id(record.run_id)
                    if run is None or not run.is_finished:
                        break  # still running: looked at again next tick
                    seen[reason] = record.id  # its run ended before evaluating the check
                    continue
                seen[reason] = record.id
                if record.status.value == "FAILED":
                    failing.append((reason, record))
        state["last_id"] = seen
        if not failing:
            context.update_cursor(json.dumps(state))
            return dg.SkipReason("no new failing drift or performance evaluation")
        reason, record = failing[-1]
        evaluation = record.event.dagster_event.event_specific_data
        over = evaluation.metadata.get("features_over_threshold")
        features = over.value if over is not None else []
        now = time.time()
        retrain = now - state.get("last_retrain", 0.0) >= cooldown
        for kind, failed in failing:
            details = failed.event.dagster_event.event_specific_data
            flagged = details.metadata.get("features_over_threshold")
            send_alert({"kind": kind, "model": name, "asset": f"{name}/{kind}", "run_id": failed.run_id,
                        "partition": failed.partition, "features": flagged.value if flagged is not None else [],
                        "reason": details.description,
                        "action": "retrain" if retrain and failed is record else "cooldown" if not retrain
                        else "retrain requested by a later failure"},
                       logger=context.log)
        if not retrain:
            context.update_cursor(json.dumps(state))
            return dg.SkipReason(f"{reason} failed on {record.partition}; retrain cooldown of "
                                 f"{spec.monitoring.retrain_cooldown} still running")
        state["last_retrain"] = now
        context.update_cursor(json.dumps(state))
        return dg.RunRequest(run_key=f"{reason}-{record.id}", partition_key=training.get_last_partition_key(),
                             tags={REASON_TAG: reason, TRIGGER_TAG: f"{name}/{reason} {record.partition}",
                                   "ml_platform/model": name, "ml_platform/drifted": ",".join(features)[:200]})

    return retrain_on_monitoring


def build_new_data_sensor(spec: ModelSpec, data_job: str, partitions: dg.TimeWindowPartitionsDefinition,
                          lookback: int = 14) -> dg.SensorDefinition | None:
    """For a `files` source with one file per day: a day's file appearing materializes that day."""
    source = spec.source
    if getattr(source, "kind", None) != "files" or "{date}" not in source.path:
        return None
    raw_key = dg.AssetKey([spec.name, "raw"])

    @dg.sensor(name=f"{spec.name}_new_data", job_name=data_job, minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Materializes a day of {spec.name} when its file appears at {source.path}.")
    def new_data(context: dg.SensorEvaluationContext):
        import fsspec

        keys = partitions.get_partition_keys()[-lookback:]
        done = context.instance.get_materialized_partitions(raw_key)
        requests = []
        for key in keys:
            if key in done:
                continue
            url = source.path.format(date=key[:10])
            fs, path = fsspec.core.url_to_fs(url, **source.storage_options)
            if fs.exists(path):
                requests.append(dg.RunRequest(run_key=f"new-data-{key}-{fs.info(path).get('size')}", partition_key=key,
                                              tags={REASON_TAG: "new data", TRIGGER_TAG: url,
                                                    "ml_platform/model": spec.name}))
        return requests or dg.SkipReason(f"no new files among the last {lookback} partitions")

    return new_data


def build_rollback_sensor(spec: ModelSpec) -> dg.SensorDefinition:
    """Automatic rollback: a new champion whose live metric trails the previous champion's by more than
    `monitoring.performance.rollback_tolerance` within `rollback_window` of its promotion goes back to
    `previous`, audited and alerted, and the endpoint is redeployed.

    The endpoint scores the previous champion beside a new one for that window, so the two are compared on the
    same requests and outcomes (`<model>/performance`'s paired comparison). Where no such pairs exist (an image
    carries one model), it falls back to each version's metric on the days it answered.
    """
    from ml_platform.core.evaluation import DEFAULT_METRIC, HIGHER_IS_BETTER
    from ml_platform.core.performance import pooled

    name = spec.name
    performance_key = dg.AssetKey([name, "performance"])
    settings = spec.monitoring.performance
    metric = settings.metric or DEFAULT_METRIC[spec.task]
    tolerance, window, min_rows = settings.rollback_tolerance, settings.rollback_window, settings.rollback_min_rows

    @dg.sensor(name=f"{name}_rollback_on_regression", minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING, target=[dg.AssetKey([name, "endpoint"])],
               description=f"Rolls {name} back to `previous` when the new champion's live {metric} trails it by "
                           f"more than {tolerance} within {window} of its promotion.")
    def rollback_on_regression(context: dg.SensorEvaluationContext, mlflow_tracking: MlflowTracking):
        registry = mlflow_tracking.registry(name)
        promotions = [r for r in registry.history() if r["action"] in ("promote", "rollback")]
        if not promotions or promotions[-1]["action"] != "promote" or not promotions[-1].get("from_version"):
            return dg.SkipReason("no fresh promotion with a previous champion to compare against")
        last = promotions[-1]
        champion, previous = str(last["version"]), str(last["from_version"])
        if context.cursor == f"{champion}:{last['at']}":
            return dg.SkipReason(f"v{champion} already judged")
        if datetime.now(timezone.utc) - datetime.fromisoformat(last["at"]) > window:
            context.update_cursor(f"{champion}:{last['at']}")
            return dg.SkipReason(f"v{champion} is past its first {window}")
        days = _latest_per_day(context.instance, performance_key)
        rows, previous_gain = pooled(_paired_days(days, champion, previous))
        if rows >= min_rows:
            how = f"on the same {rows} labelled requests"
        else:  # no pairs: each version on the days it answered
            answered = [d.get("answered_by_version", {}) for d in days.values()]
            (new_rows, new_value), (old_rows, old_value) = (pooled([a[v] for a in answered if v in a], metric)
                                                            for v in (champion, previous))
            if new_rows < min_rows or old_rows < min_rows:
                return dg.SkipReason(f"not enough labelled live rows yet (paired: {rows}; v{champion}: {new_rows}, "
                                     f"v{previous}: {old_rows}; need {min_rows})")
            previous_gain = (old_value - new_value) if metric in HIGHER_IS_BETTER else (new_value - old_value)
            how = f"on the days each answered (v{champion}: {new_rows} rows, v{previous}: {old_rows} rows)"
        context.update_cursor(f"{champion}:{last['at']}")
        if previous_gain <= tolerance:
            return dg.SkipReason(f"v{champion} kept: v{previous} does better by {previous_gain:+.4f} {metric} "
                                 f"{how}, within {tolerance}")
        reason = f"live {metric} of v{champion} trails v{previous} by {previous_gain:.4f} > {tolerance} {how}"
        record = registry.rollback(reason, {"trigger": "rollback_on_regression", "metric": metric})
        send_alert({"kind": "rollback", "model": name, "asset": f"{name}/champion", "run_id": None,
                    "from_version": champion, "to_version": record["version"], "reason": reason},
                   logger=context.log)
        return _redeploy(name, "rollback", f"v{champion} → v{record['version']}: {reason}")

    return rollback_on_regression


def _latest_per_day(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int = 500) -> dict[str, dict]:
    """The metadata of each partition's newest materialization: a day evaluated again counts once."""
    latest: dict[str, dict] = {}
    for record in instance.fetch_materializations(key, limit=limit).records:  # newest first
        latest.setdefault(record.partition_key, {k: v.value for k, v in
                                                 record.asset_materialization.metadata.items()})
    return latest


def _paired_days(days: dict[str, dict], champion: str, other: str) -> list[dict]:
    """Each day's paired comparison of `champion` with `other` (from `<model>/performance`)."""
    return [{"day": day, **entry} for day, metadata in days.items()
            for entry in metadata.get("paired_comparison", [])
            if (entry["champion"], entry["other"]) == (champion, other)]


def _redeploy(name: str, reason: str, trigger: str) -> dg.RunRequest:
    """Deploy the champion the registry now names: the endpoint's smoke test proves it serves."""
    return dg.RunRequest(asset_selection=[dg.AssetKey([name, "endpoint"])],
                         tags={REASON_TAG: reason, TRIGGER_TAG: trigger[:200], "ml_platform/model": name})


def build_online_challenger_sensor(spec: ModelSpec) -> dg.SensorDefinition | None:
    """Online champion/challenger: a gated challenger served in shadow or canary is judged on the same live
    outcomes as the champion (`<model>/performance`'s paired comparison, per day). Over the spec's window it is
    promoted through the offline gates' record and the audit trail, then deployed; or it is retired."""
    from ml_platform.core.performance import judge_challenger
    from ml_platform.core.registry import RegistryError

    rollout = spec.serving.rollout
    if rollout.mode == "none":
        return None
    name = spec.name
    performance_key = dg.AssetKey([name, "performance"])

    @dg.sensor(name=f"{name}_online_challenger", minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING, target=[dg.AssetKey([name, "endpoint"])],
               description=f"Promotes the {rollout.mode} challenger of {name} when it beats the champion on the "
                           f"same live outcomes over {rollout.window_days} days ({rollout.min_rows}+ labelled "
                           f"rows, gain ≥ {rollout.min_improvement}); retires it when it does not.")
    def online_challenger(context: dg.SensorEvaluationContext, mlflow_tracking: MlflowTracking):
        registry = mlflow_tracking.registry(name)
        champion, challenger = registry.version_of("champion"), registry.version_of("challenger")
        if champion is None or challenger is None or champion == challenger:
            return dg.SkipReason("no challenger on trial")
        if context.cursor == f"{champion}:{challenger}":
            return dg.SkipReason(f"v{challenger} against v{champion} already decided")
        paired = _paired_days(_latest_per_day(context.instance, performance_key), champion, challenger)
        verdict = judge_challenger(paired, rollout.window_days, rollout.min_rows, rollout.min_improvement)
        if verdict.decision == "wait":
            return dg.SkipReason(f"v{challenger} against v{champion}: {verdict.reason}")
        context.update_cursor(f"{champion}:{challenger}")
        evidence = {"trigger": "online_challenger", "mode": rollout.mode, "gain": verdict.gain,
                    "rows": verdict.rows, "days": list(verdict.days), "champion": champion}
        if verdict.decision == "retire":
            record = registry.retire_challenger(verdict.reason, evidence)
            send_alert({"kind": "challenger_retired", "model": name, "asset": f"{name}/champion", "run_id": None,
                        "version": challenger, "champion": champion, "reason": verdict.reason}, logger=context.log)
            return dg.SkipReason(f"retired v{record['version']}: {verdict.reason}")
        try:
            record = registry.promote_gated(challenger, verdict.reason, evidence)
        except RegistryError as error:
            send_alert({"kind": "challenger_blocked", "model": name, "asset": f"{name}/champion", "run_id": None,
                        "version": challenger, "reason": str(error)}, logger=context.log)
            return dg.SkipReason(str(error))
        send_alert({"kind": "challenger_promoted", "model": name, "asset": f"{name}/champion", "run_id": None,
                    "version": challenger, "from_version": champion, "reason": verdict.reason}, logger=context.log)
        return _redeploy(name, "online challenger won", f"v{champion} → v{record['version']}: {verdict.reason}")

    return online_challenger


def build_staleness_sensor(spec: ModelSpec) -> dg.SensorDefinition | None:
    """Alerts when `raw`, `model` or `endpoint` turns stale (WARN or FAIL under its freshness policy) and when
    it is fresh again. The states are Dagster's own, written by the freshness daemon; the cursor remembers the
    last state change alerted per asset, so each change alerts once."""
    name = spec.name
    policies = {"raw": spec.partitions.freshness, "model": spec.monitoring.model_freshness,
                "endpoint": spec.monitoring.endpoint_freshness}
    keys = [dg.AssetKey([name, stage]) for stage, policy in policies.items() if policy is not None]
    if not keys:
        return None

    @dg.sensor(name=f"{name}_staleness_alerts", minimum_interval_seconds=60,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"Alerts when {', '.join(k.to_user_string() for k in keys)} go stale under their "
                           "freshness policies, and when they are fresh again.")
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
                stage = key.path[-1]
                policy = policies[stage]
                send_alert({"kind": "stale" if state != "PASS" else "fresh_again", "model": name, "asset": asset,
                            "run_id": None, "state": state, "since": record.updated_at.isoformat(),
                            "reason": f"{asset} is {state}: its freshness policy "
                                      + (f"warns after {policy.warn_after} and " if policy.warn_after else "")
                                      + f"fails after {policy.fail_after} without a materialization"},
                           logger=context.log)
                sent.append(f"{asset} {state}")
        context.update_cursor(json.dumps(seen))
        return dg.SkipReason(f"alerted: {', '.join(sent)}" if sent else "no freshness change to alert")

    return staleness_alerts
