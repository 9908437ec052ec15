"""Registry decisions taken on live outcomes: roll a regressing new champion back, and promote or retire a
challenger on trial online. Both read `<model>/performance`'s daily paired comparisons (two versions scored
on the same labelled requests), let a pure judge in `core.performance` decide, then act: move the registry's
aliases (audited), alert, and redeploy the endpoint (`<model>_deploy`) so the version the registry names is
the one serving. One sensor per decision serves every model; MLflow is read for a model only when its champion,
endpoint or performance has materialized since the last look (or that look is 15 to 30 minutes old).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg

from ml_platform.core.alerts import send_alert
from ml_platform.defs import conventions
from ml_platform.defs.sensors.per_model import Looked, Watched, look_at_each
from ml_platform.defs.serving_assets import deploy_job_name
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    from ml_platform.core.performance import PairedDay
    from ml_platform.defs.resources import MlflowTracking

# Each model's registry is read again within this time (seconds; 15 to 30 minutes, staggered by model name so the
# models' re-reads spread over ticks) even when nothing moved in Dagster: an alias moved by hand is noticed.
REREAD_AFTER = 15 * 60
# Whose newest materializations say whether a registry decision may have changed: a promotion materializes
# `champion`, a redeploy `endpoint`, and the live evidence arrives with each day of `performance`.
MARKED_STAGES = ("champion", "endpoint", "performance")


@dataclass
class _Memo:
    """One model's state in a registry sensor, on this tick. `decided` is what its own sensor kept as cursor (the
    promotion, or the champion:challenger trial, already judged). `marks` are the newest materializations of
    its champion, endpoint and performance at the last full look, `at` its time and `found` what it found: a
    tick where none moved (and the look is younger than `reread_after`) repeats the finding without reading
    MLflow. `now_marks` and `now` are this tick's."""

    now_marks: list[int | None]
    now: float
    reread_after: float
    decided: str | None = None
    marks: list[int | None] | None = None
    at: float = 0.0
    found: str = ""

    @classmethod
    def load(cls, name: str, state: Any, marks: list[int | None], now: float) -> _Memo:
        reread_after = REREAD_AFTER + zlib.crc32(name.encode()) % REREAD_AFTER
        if not isinstance(state, dict):
            return cls(marks, now, reread_after)
        return cls(
            marks,
            now,
            reread_after,
            state.get("decided"),
            state.get("marks"),
            float(state.get("at", 0.0)),
            str(state.get("found", "")),
        )

    def unchanged(self) -> Looked | None:
        """The last finding again when nothing moved since it was made; None: look."""
        if self.marks != self.now_marks or self.now - self.at >= self.reread_after:
            return None
        return Looked(self._state(marks=self.marks, at=self.at, found=self.found), self.found)

    def seen(self, found: str) -> Looked:
        """Nothing done: what was found, remembered with what it was found on."""
        return Looked(self._state(marks=self.now_marks, at=round(self.now), found=found[:200]), found)

    def acted(self, found: str, requests: Sequence[dg.RunRequest] = ()) -> Looked:
        """The registry moved: nothing remembered but the decision, so the next tick looks again."""
        return Looked(self._state(), found, requests)

    def _state(self, **looked: Any) -> dict[str, Any]:
        return {k: v for k, v in {"decided": self.decided, **looked}.items() if v is not None}


def _registry_sensor(
    name: str,
    models: Sequence[Watched],
    description: str,
    judge: Callable[[dg.SensorEvaluationContext, MlflowTracking, ModelSpec, _Memo], Looked],
) -> dg.SensorDefinition:
    """A registry decision for every model, redeploying through `<model>_deploy`: each model's registry is
    judged only when its champion, endpoint or performance moved since its last look (one query for all)."""

    @dg.sensor(
        name=name,
        jobs=[model.job(deploy_job_name(model.spec)) for model in models],
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        required_resource_keys={conventions.MLFLOW_RESOURCE_KEY},
        description=description,
    )
    def decide(context: dg.SensorEvaluationContext):
        tracking = getattr(context.resources, conventions.MLFLOW_RESOURCE_KEY)
        marks, now = _marks(context.instance, models), time.time()

        def look(model: Watched, state: Any) -> Looked:
            memo = _Memo.load(model.name, state, marks[model.name], now)
            return memo.unchanged() or judge(context, tracking, model.spec, memo)

        return look_at_each(context, models, look)

    return decide


def rollback_sensor(models: Sequence[Watched]) -> dg.SensorDefinition:
    """Automatic rollback, for every model: a new champion whose live metric trails the previous champion's by
    more than `monitoring.performance.rollback_tolerance` within `rollback_window` of its promotion goes back
    to `previous`, audited and alerted, and `<model>_deploy` redeploys the endpoint.

    The endpoint scores the previous champion beside a new one for that window, so the two are compared on the
    same requests and outcomes (`<model>/performance`'s paired comparison). Where no such pairs exist (an image
    carries one model), it falls back to each version's metric on the days it answered. Each promotion is
    judged once: a kept champion is not second-guessed later by this sensor.
    """

    return _registry_sensor(
        "rollback_on_regression",
        models,
        f"For each model ({len(models)}): rolls back to `previous` when the new champion's live metric trails it "
        "by more than `monitoring.performance.rollback_tolerance` within `rollback_window` of its promotion, and "
        "redeploys the endpoint.",
        _judge_rollback,
    )


def _judge_rollback(
    context: dg.SensorEvaluationContext, tracking: MlflowTracking, spec: ModelSpec, memo: _Memo
) -> Looked:
    from ml_platform.core.performance import AnsweredRows, judge_rollback

    registry = tracking.registry(spec.name)
    settings = spec.monitoring.performance
    metric = spec.live_metric
    tolerance, window, min_rows = settings.rollback_tolerance, settings.rollback_window, settings.rollback_min_rows
    promotions = [r for r in registry.history() if r["action"] in ("promote", "rollback")]
    if not promotions or promotions[-1]["action"] != "promote" or not promotions[-1].get("from_version"):
        return memo.seen("no fresh promotion with a previous champion to compare against")
    last = promotions[-1]
    champion, previous = str(last["version"]), str(last["from_version"])
    judged = f"{champion}:{last['at']}"
    if memo.decided == judged:
        return memo.seen(f"v{champion} already judged")
    if datetime.now(UTC) - datetime.fromisoformat(last["at"]) > window:
        memo.decided = judged
        return memo.seen(f"v{champion} is past its first {window}")
    days = latest_per_day(context.instance, conventions.key(spec, "performance"))
    verdict = judge_rollback(
        paired_days(days, champion, previous),
        [AnsweredRows.by_version(d.get("answered_by_version", {}), metric) for d in days.values()],
        champion,
        previous,
        metric,
        tolerance,
        min_rows,
    )
    if verdict.decision == "wait":
        return memo.seen(verdict.reason)
    memo.decided = judged
    if verdict.decision == "keep":
        return memo.seen(verdict.reason)
    record = registry.rollback(verdict.reason, {"trigger": "rollback_on_regression", "metric": metric})
    send_alert(
        {
            "kind": "rollback",
            "model": spec.name,
            "asset": _champion_asset(spec),
            "run_id": None,
            "from_version": champion,
            "to_version": record["version"],
            "reason": verdict.reason,
        },
        logger=context.log,
    )
    moved = f"v{champion} → v{record['version']}: {verdict.reason}"
    return memo.acted(f"rolled back {moved}", [_redeploy(spec, "rollback", moved)])


def online_challenger_sensor(models: Sequence[Watched]) -> dg.SensorDefinition | None:
    """Online champion/challenger, for every model whose spec asks for it (`serving.rollout.mode` `shadow` or
    `canary`): a gated challenger served in shadow or canary is judged on the same live outcomes as the
    champion (`<model>/performance`'s paired comparison, per day). Over the spec's window it is promoted through
    the offline gates' record and the audit trail, then deployed; or it is retired. None when no spec rolls
    out with a trial."""
    trials = [model for model in models if model.spec.serving.rollout.mode != "none"]
    if not trials:
        return None

    return _registry_sensor(
        "online_challenger",
        trials,
        f"For each model rolling out in shadow or canary ({len(trials)}): promotes the challenger when it beats "
        "the champion on the same live outcomes over `serving.rollout.trial_days` (with `min_rows` labelled rows "
        "and a gain of at least `min_improvement`); retires it when it does not.",
        _judge_challenger,
    )


def _judge_challenger(
    context: dg.SensorEvaluationContext, tracking: MlflowTracking, spec: ModelSpec, memo: _Memo
) -> Looked:
    from ml_platform.core.performance import judge_challenger
    from ml_platform.core.registry import RegistryError

    registry = tracking.registry(spec.name)
    name, rollout = spec.name, spec.serving.rollout
    champion, challenger = registry.version_of("champion"), registry.version_of("challenger")
    if champion is None or challenger is None or champion == challenger:
        return memo.seen("no challenger on trial")
    if memo.decided == f"{champion}:{challenger}":
        return memo.seen(f"v{challenger} against v{champion} already decided")
    paired = paired_days(latest_per_day(context.instance, conventions.key(spec, "performance")), champion, challenger)
    verdict = judge_challenger(paired, rollout.trial_days, rollout.min_rows, rollout.min_improvement)
    if verdict.decision == "wait":
        return memo.seen(f"v{challenger} against v{champion}: {verdict.reason}")
    memo.decided = f"{champion}:{challenger}"
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
        return memo.acted(f"retired v{record['version']}: {verdict.reason}")
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
        return memo.acted(str(error))
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
    moved = f"v{champion} → v{record['version']}: {verdict.reason}"
    return memo.acted(f"promoted {moved}", [_redeploy(spec, "online challenger won", moved)])


def _marks(instance: dg.DagsterInstance, models: Sequence[Watched]) -> dict[str, list[int | None]]:
    """Per model, the storage ids of the newest materializations of its champion, endpoint and performance:
    one query for every model."""
    keys = {model.name: [conventions.key(model.spec, stage) for stage in MARKED_STAGES] for model in models}
    newest = {
        record.asset_entry.asset_key: record.asset_entry.last_materialization_storage_id
        for record in instance.get_asset_records([key for model_keys in keys.values() for key in model_keys])
    }
    return {name: [newest.get(key) for key in model_keys] for name, model_keys in keys.items()}


def latest_per_day(instance: dg.DagsterInstance, key: dg.AssetKey, limit: int = 500) -> dict[str, dict]:
    """The metadata of each partition's newest materialization: a day evaluated again counts once."""
    latest: dict[str, dict] = {}
    for record in instance.fetch_materializations(key, limit=limit).records:  # newest first
        materialization = record.asset_materialization
        if record.partition_key is None or materialization is None:  # not a day's materialization
            continue
        latest.setdefault(record.partition_key, {k: v.value for k, v in materialization.metadata.items()})
    return latest


def paired_days(days: dict[str, dict], champion: str, other: str) -> list[PairedDay]:
    """Each day's paired comparison of `champion` with `other` (from `<model>/performance`)."""
    from ml_platform.core.performance import PairedDay

    return [
        PairedDay.from_metadata(day, entry)
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
        job_name=deploy_job_name(spec),
        asset_selection=[conventions.key(spec, "endpoint")],
        tags={conventions.REASON_TAG: reason, conventions.TRIGGER_TAG: trigger[:200], **conventions.model_tags(spec)},
    )
