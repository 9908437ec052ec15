"""The platform's conventions for every model's graph, in one place.

Asset keys are `<model>/<stage>`; every asset of a model carries the model's group, owner, tag and code
version (the spec's digest), and every stored asset (partitioned) goes through the Parquet IO manager
(`IO_MANAGER_KEY`). Stage builders declare their assets with `asset`, which adds the rest, and pass only what is
particular to a stage.
Named automation conditions and freshness policies live here so each is written once and reads as a sentence.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from ml_platform.core.engine import ENGINE_KEY
from ml_platform.defs.resources import engine_for
from ml_platform.spec import Freshness, ModelSpec

MODEL_TAG = "ml_platform/model"
REASON_TAG = "ml_platform/reason"
TRIGGER_TAG = "ml_platform/trigger"
DRIFTED_TAG = "ml_platform/drifted"  # on a retrain run: the features whose drift started it
# On a retrain run: the model it trains. A deployment's run queue limits concurrent runs per value of this tag
# (deploy/dagster.yaml: at most one retraining per model at a time).
TRAINING_TAG = "ml_platform/training"
IO_MANAGER_KEY = "parquet_io_manager"
MLFLOW_RESOURCE_KEY = "mlflow_tracking"
DASK_RESOURCE_KEY = "dask_cluster"
# Stages whose stored content is a function of the spec: they carry its digest as code version, so a spec
# change shows them as changed. Serving and monitoring outputs follow the champion version instead.
SPEC_VERSIONED = ("raw", "features", "training_set", "model", "evaluation", "champion")


def key(spec: ModelSpec, stage: str) -> dg.AssetKey:
    """The asset key of one stage of a model: `<model>/<stage>`."""
    return dg.AssetKey([spec.name, stage])


def model_tags(spec: ModelSpec) -> dict[str, str]:
    """Tags of runs and jobs that belong to a model (alerts and the UI filter by them)."""
    return {MODEL_TAG: spec.name}


def frame_input(spec: ModelSpec, **metadata) -> dict:
    """An input's metadata: the name of the model's engine (`engine_for`), which the IO manager asks to load it
    (a pandas frame, or a lazy Dask DataFrame over the stored partitions)."""
    return {**metadata, ENGINE_KEY: engine_for(spec).name}


def frame_kind(spec: ModelSpec) -> str:
    """The kind of the frames a model's engine handles: pandas or dask."""
    return engine_for(spec).kind


def cluster_kinds(spec: ModelSpec) -> set[str]:
    """The kind of the cluster a model's engine computes on ({"dask"}), for a stage whose other kinds do not name
    its frames; none when it computes in the step's own process."""
    engine = engine_for(spec)
    return {engine.kind} if engine.on_cluster else set()


def retrain_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_retrain"


def data_job_name(spec: ModelSpec) -> str:
    return f"{spec.name}_data"


def schedule_minute(spec: ModelSpec) -> int:
    """The minute past the hour at which the model's schedules and its morning load fire: `schedule.minute` (the
    spec's, or the one `spread_minutes` gave it), else one derived from the model's name by SHA-256 (the same in
    every process and on every machine, unlike Python's salted `hash`)."""
    if spec.schedule.minute is not None:
        return spec.schedule.minute
    return int(hashlib.sha256(spec.name.encode()).hexdigest(), 16) % 60


# At most this many of a location's models start at one minute, while the location holds up to 60 times as many.
MODELS_PER_MINUTE = 2


def spread_minutes(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The location's specs, each that leaves `schedule.minute` out given one: its name's minute
    (`schedule_minute`), or the next minute after it that holds fewer than `MODELS_PER_MINUTE` of the location's
    models (a minute a spec sets counts too), taken in order of name minute then name.

    Hashing alone is uneven: 100 models put 5 at one minute. This holds every minute to 2 models up to 120 models
    (to ceil(N / 60) beyond), the same in every process, each model at its name's minute or a few minutes after
    it (at most 3 for 100 models); a newcomer may push the models after it in a crowded stretch on by a minute."""
    per_minute = max(MODELS_PER_MINUTE, math.ceil(len(specs) / 60))
    taken = Counter(spec.schedule.minute for spec in specs if spec.schedule.minute is not None)
    chosen: dict[str, int] = {}
    for spec in sorted((s for s in specs if s.schedule.minute is None), key=lambda s: (schedule_minute(s), s.name)):
        start = schedule_minute(spec)
        minute = next((m % 60 for m in range(start, start + 60) if taken[m % 60] < per_minute), start)
        taken[minute] += 1
        chosen[spec.name] = minute
    return [
        spec.model_copy(update={"schedule": spec.schedule.model_copy(update={"minute": chosen[spec.name]})})
        if spec.name in chosen
        else spec
        for spec in specs
    ]


def freshness_by_stage(spec: ModelSpec) -> dict[str, Freshness | None]:
    """The stages whose staleness users watch, with the spec's policy for each (None: not watched)."""
    return {
        "raw": spec.partitions.freshness,
        "model": spec.monitoring.model_freshness,
        "endpoint": spec.monitoring.endpoint_freshness,
    }


def freshness(policy: Freshness | None) -> dg.FreshnessPolicy | None:
    """The spec's `warn_after`/`fail_after` as Dagster's time-window freshness policy."""
    if policy is None:
        return None
    return dg.FreshnessPolicy.time_window(fail_window=policy.fail_after, warn_window=policy.warn_after)


def asset(spec: ModelSpec, stage: str, **attributes: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
    """`dg.asset` for one stage of a model, with what every asset of the model carries declared here once: the
    key `<model>/<stage>`, the model's group, owner and tag, the spec's freshness policy for the stages users
    watch, and the spec's digest as code version for the stages whose content is a function of the spec. Stage
    builders pass only what is particular to their stage (partitions, inputs, checks, kinds, the IO manager key
    of a stored asset, automation).

    Declared on the decorator rather than stamped over the merged definitions afterwards
    (`Definitions.map_resolved_asset_specs`), which rebuilt every asset once more: a third of a model's build."""
    return dg.asset(
        key=key(spec, stage),
        group_name=spec.name,
        owners=[spec.owner],
        tags={**model_tags(spec), **attributes.pop("tags", {})},
        code_version=spec.digest if stage in SPEC_VERSIONED else None,
        freshness_policy=freshness(freshness_by_stage(spec).get(stage)),
        **attributes,
    )


# --- named automation conditions --------------------------------------------------------------------------


def each_morning(minute: int) -> dg.AutomationCondition:
    """Load the newest complete day every morning, at 02:`minute` (`schedule_minute`)."""
    return dg.AutomationCondition.on_cron(f"{minute} 2 * * *")


def once_upstream_passed_its_checks() -> dg.AutomationCondition:
    """As soon as the day's upstream data is in and its blocking checks passed."""
    return dg.AutomationCondition.eager() & dg.AutomationCondition.all_deps_blocking_checks_passed()


def daily_once_a_champion_exists(champion: dg.AssetKey) -> dg.AutomationCondition:
    """Each new day of features, once some champion exists (whichever week it came from)."""
    selection = dg.AssetSelection.assets(champion)
    return dg.AutomationCondition.eager().ignore(selection) & dg.AutomationCondition.any_deps_match(
        ~dg.AutomationCondition.missing()
    ).allow(selection)


def whenever_the_champion_moves() -> dg.AutomationCondition:
    """Redeploy whenever the champion moves (any week's champion step), one deploy at a time."""
    return dg.AutomationCondition.any_deps_updated().since_last_handled() & ~dg.AutomationCondition.in_progress()


def when_labels_arrive(endpoint: dg.AssetKey) -> dg.AutomationCondition:
    """When a day's outcomes (its features) arrive; a redeploy alone does not re-judge past days."""
    return dg.AutomationCondition.eager().ignore(dg.AssetSelection.assets(endpoint))
