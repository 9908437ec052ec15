"""Sensors that close the loop: alert on failed runs, and retrain (once per drift episode) when drift fails.

Both run by default under `dagster dev`. Drift is read from the `drift_fail` check's execution records; the
cursor remembers the last record seen and the time of the last retrain, so one drift episode (several failing
days in a row) starts one retrain per `monitoring.retrain_cooldown`.
"""

import json
import time

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.defs.monitoring_assets import DRIFT_FAIL
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


def build_drift_sensor(spec: ModelSpec, retrain_job: str, training: dg.PartitionsDefinition) -> dg.SensorDefinition:
    name = spec.name
    check_key = dg.AssetCheckKey(dg.AssetKey([name, "drift"]), DRIFT_FAIL)
    cooldown = spec.monitoring.retrain_cooldown.total_seconds()

    @dg.sensor(name=f"{name}_retrain_on_drift", job_name=retrain_job, minimum_interval_seconds=30,
               default_status=dg.DefaultSensorStatus.RUNNING,
               description=f"When {name}/drift fails its `{DRIFT_FAIL}` check: alert, and retrain the latest week "
                           f"(at most once per {spec.monitoring.retrain_cooldown}).")
    def retrain_on_drift(context: dg.SensorEvaluationContext):
        state = json.loads(context.cursor) if context.cursor else {"last_id": 0, "last_retrain": 0.0}
        # every evaluation since the cursor, oldest first: a passing day evaluated later must not hide a failure
        history = context.instance.event_log_storage.get_asset_check_execution_history(check_key, limit=100)
        new = []
        for record in sorted((r for r in history if r.id > state["last_id"]), key=lambda r: r.id):
            if record.event is None or record.event.dagster_event is None:
                break  # still running: look again next tick, from here
            new.append(record)
        if not new:
            return dg.SkipReason("no new drift evaluation")
        state["last_id"] = new[-1].id
        failing = [r for r in new if not r.event.dagster_event.event_specific_data.passed]
        if not failing:
            context.update_cursor(json.dumps(state))
            return dg.SkipReason(f"drift check passed on {', '.join(str(r.partition) for r in new)}")
        record = failing[-1]
        evaluation = record.event.dagster_event.event_specific_data
        over = evaluation.metadata.get("features_over_threshold")
        features = over.value if over is not None else []
        now = time.time()
        retrain = now - state["last_retrain"] >= cooldown
        send_alert({"kind": "drift", "model": name, "asset": f"{name}/drift", "run_id": record.run_id,
                    "partition": record.partition, "features": features,
                    "reason": evaluation.description, "action": "retrain" if retrain else "cooldown"},
                   logger=context.log)
        if not retrain:
            context.update_cursor(json.dumps(state))
            return dg.SkipReason(f"drift on {record.partition}; retrain cooldown of "
                                 f"{spec.monitoring.retrain_cooldown} still running")
        state["last_retrain"] = now
        context.update_cursor(json.dumps(state))
        partition = training.get_last_partition_key()
        return dg.RunRequest(run_key=f"drift-{record.id}", partition_key=partition,
                             tags={REASON_TAG: "drift", TRIGGER_TAG: f"{name}/drift {record.partition}",
                                   "ml_platform/model": name, "ml_platform/drifted": ",".join(features)[:200]})

    return retrain_on_drift


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
