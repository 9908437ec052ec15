"""When monitoring asks for a retrain: which new drift and live-performance evaluations failed, and whether the
cooldown since the last retrain is over; and, once a retrain runs, whether it would only repeat the newest
registered version (a no-op: same data, same spec, same training code), and what the retrain produced
(`RetrainOutcome`).

One episode (several failing days in a row) must start one retrain per cooldown, and every failure must be
seen exactly once even though evaluations resolve out of order (a day still being evaluated, a run that died
before evaluating its checks). That bookkeeping is plain state, kept here without any orchestrator: the
retrain sensor stores it as its cursor and feeds it the check records it reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform.core.engine import LOCAL, Engine

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ml_platform.core.dask_frames import StoredPartitions
    from ml_platform.core.training_run import TrainedModel
    from ml_platform.spec import ModelSpec


@dataclass(frozen=True)
class CheckRecord:
    """One evaluation of a watched check, as the cursor needs it.

    `id` grows with each evaluation; `status` is "PLANNED" (its run has not evaluated it, yet or ever),
    "FAILED" or "SUCCEEDED"; `run_finished` tells, for a planned one, whether its run is over (so it never
    will be evaluated). `source` is the caller's own record, handed back untouched with the failing ones.
    """

    id: int
    status: str
    run_finished: bool = True
    source: Any = field(default=None, compare=False, repr=False)


class RetrainStatus(StrEnum):
    """What became of a requested retrain, as the cursor is told it (`RetrainCursor.settle`)."""

    RUNNING = "running"  # no run yet, or not finished: the cooldown holds
    NOOP = "noop"  # its model step found the newest registered version unchanged: not a retrain
    RETRAINED = "retrained"  # a new version, or a failure: the cooldown stands


@dataclass(frozen=True, slots=True)
class PendingRetrain:
    """A requested retrain not settled yet: the request's id, and when the retrain before it was (epoch
    seconds), which a no-op gives back."""

    request: str
    before: float


@dataclass
class RetrainCursor:
    """The last evaluation looked at per reason ("drift", "performance") and the time of the last retrain.

    Stored as JSON `{"last_id": {reason: id}, "last_retrain": epoch seconds}` (`last_retrain` absent until the
    first retrain), the shape the sensor has always written, so cursors of running deployments keep working.
    While a requested retrain has not finished, `pending` says which request it was and when the retrain
    before it was (stored as `{"request": id, "before": epoch seconds}`): a request that turns out a no-op
    gives the cooldown back (`settle`).
    """

    last_id: dict[str, int] = field(default_factory=dict)
    last_retrain: float = 0.0
    pending: PendingRetrain | None = None

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        state = json.loads(text) if text else {}
        pending = state.get("pending")
        return cls(
            last_id={str(k): int(v) for k, v in state.get("last_id", {}).items()},
            last_retrain=float(state.get("last_retrain", 0.0)),
            pending=PendingRetrain(str(pending["request"]), float(pending.get("before", 0.0))) if pending else None,
        )

    def to_json(self) -> str:
        state: dict[str, Any] = {"last_id": dict(self.last_id)}
        if self.last_retrain:
            state["last_retrain"] = self.last_retrain
        if self.pending:
            state["pending"] = {"request": self.pending.request, "before": self.pending.before}
        return json.dumps(state)

    def since(self, reason: str) -> int:
        """The id of the last evaluation of `reason` already looked at (0: none)."""
        return self.last_id.get(reason, 0)

    def advance(self, records: Mapping[str, Iterable[CheckRecord]]) -> list[tuple[str, CheckRecord]]:
        """The failing evaluations among those newer than the cursor, per reason in order, oldest first; the
        cursor moves past every evaluation it has resolved.

        Every resolved evaluation counts, so a passing day evaluated later cannot hide an earlier failure. A
        planned evaluation whose run is still going stops the scan of its reason: it and everything after it
        are looked at again next time. One whose run has finished will never be evaluated and is passed over.
        """
        failing = []
        for reason, candidates in records.items():
            for record in sorted((r for r in candidates if r.id > self.since(reason)), key=lambda r: r.id):
                if record.status == "PLANNED" and not record.run_finished:
                    break
                self.last_id[reason] = record.id
                if record.status == "FAILED":
                    failing.append((reason, record))
        return failing

    def due(self, now: float, cooldown_s: float) -> bool:
        """Whether a retrain may start at `now`: the cooldown since the last one is over."""
        return now - self.last_retrain >= cooldown_s

    def retrained(self, now: float, request: str | None = None) -> None:
        """Record a retrain started at `now` (the cooldown runs from here); `request` names the run requested,
        whose outcome `settle` is told later."""
        self.pending = PendingRetrain(request, self.last_retrain) if request else None
        self.last_retrain = now

    def settle(self, outcome: RetrainStatus) -> bool:
        """The pending request's outcome: RUNNING (not over yet: the cooldown holds), NOOP (it only found the
        newest registered version again: not a retrain, so the cooldown is given back) or RETRAINED (a new
        version, or a failure: the cooldown stands). True when the pending request is settled now."""
        if self.pending is None or outcome == RetrainStatus.RUNNING:
            return False
        if outcome == RetrainStatus.NOOP:
            self.last_retrain = self.pending.before
        self.pending = None
        return True


# --- no-op retrains ----------------------------------------------------------------------------------------

# The modules whose code decides a trained model's bytes, given its training set and spec.
_TRAINING_MODULES = (
    "training.py",
    "training_run.py",
    "model.py",
    "pyfunc_model.py",
    "training_set.py",
    "dask_training.py",
    "labels.py",
)


@functools.lru_cache(maxsize=1)
def training_code_version() -> str:
    """A short hash of the training code and the LightGBM release: a platform upgrade that changes training
    is a reason to retrain even when the data and the spec are the same."""
    from importlib.metadata import version

    digest = hashlib.sha256(f"lightgbm {version('lightgbm')}".encode())
    for module in _TRAINING_MODULES:
        digest.update(Path(__file__).with_name(module).read_bytes())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class RetrainInputs:
    """What a retrain's model is a function of: the content of each day of the training window, the spec and
    the training code. Registered versions carry it as tags, so a retrain can tell it would repeat one."""

    data_versions_digest: str  # of the window's per-day content hashes (the MLflow run's tag of that name)
    spec_digest: str
    training_code_version: str
    days: int = field(default=0, compare=False)
    versions: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # per day, for the run

    def tags(self) -> dict[str, str]:
        return {
            "data_versions_digest": self.data_versions_digest,
            "spec_digest": self.spec_digest,
            "training_code_version": self.training_code_version,
        }


def retrain_inputs(
    spec: ModelSpec, training_set: pd.DataFrame | StoredPartitions, engine: Engine = LOCAL
) -> RetrainInputs:
    """The inputs of a retrain on this stored training set (the frame of `engine`), hashed the way the training
    run logs them."""
    from ml_platform.core.data_versions import versions_digest

    versions = engine.versions(training_set, spec.timestamp)
    return RetrainInputs(
        versions_digest(versions), spec.digest, training_code_version(), days=len(versions), versions=versions
    )


@dataclass(frozen=True)
class UnchangedVersion:
    """The newest registered version, whose inputs a retrain would only repeat."""

    version: str
    run_id: str
    model_uri: str
    tags: dict[str, str]
    reason: str


def newest_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The registered model's newest version (highest number), or None before the first."""
    from mlflow.exceptions import MlflowException

    try:
        versions = client.search_model_versions(f"name='{name}'")
    except MlflowException:
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def unchanged_version(client: MlflowClient, name: str, inputs: RetrainInputs) -> UnchangedVersion | None:
    """The newest registered version when its recorded inputs equal `inputs` (else None: retrain).

    Only the newest counts: if a later version came from other weeks, going back to an older week's data
    registers it again, as a retrain on it always did. A version registered before its inputs were recorded
    never matches."""
    newest = newest_version(client, name)
    if newest is None or newest.run_id is None or newest.source is None:  # no run to reuse the model of
        return None
    tags = dict(newest.tags or {})
    if any(tags.get(key) != value for key, value in inputs.tags().items()):
        return None
    reason = (
        f"no-op retrain: the inputs equal those of the newest registered version v{newest.version} "
        f"(partition {tags.get('partition', '?')}): the same {inputs.days} days of data "
        f"(data versions digest {inputs.data_versions_digest}), spec digest {inputs.spec_digest} and "
        f"training code {inputs.training_code_version}; nothing was trained or registered"
    )
    return UnchangedVersion(str(newest.version), newest.run_id, newest.source, tags, reason)


# --- a retrain's outcome -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RetrainOutcome:
    """What a retrain's model step produced: a version trained and registered, or the newest registered one
    found unchanged (a no-op: `noop`, with `noop_reason`), built once by the model step.

    Two forms cross the orchestrator: `row()`, the one-row table the model asset stores and evaluation reads
    back (`from_stored`), and `to_metadata()`, its materialization's metadata. Both keep the keys every release
    has written (`noop`, `noop_reason`), so runs recorded before this record existed read the same.
    """

    model: str
    version: str
    run_id: str
    experiment_id: str
    model_uri: str
    partition: str
    spec_digest: str
    best_iteration: int
    model_sha256: str
    noop: bool = False
    noop_reason: str = ""  # why nothing was trained (a no-op), else empty
    data_versions_digest: str = ""
    training_code_version: str = ""
    train_seconds: float = 0.0
    valid: Mapping[str, float] = field(default_factory=dict)  # validation metrics, without the `valid_` prefix
    timings: Mapping[str, float] = field(default_factory=dict)  # seconds per part of the training
    tuning_trials: Sequence[Mapping[str, Any]] = ()  # the best trials first, when the spec tunes
    registered_by_run: str = ""  # a no-op's: the orchestrator run that registered the version

    @classmethod
    def trained(
        cls,
        spec: ModelSpec,
        partition: str,
        version: str,
        run_id: str,
        experiment_id: str,
        model: TrainedModel,
        inputs: RetrainInputs,
    ) -> RetrainOutcome:
        """A version trained and logged in run `run_id`, registered as `version`."""
        return cls(
            spec.name,
            version,
            run_id,
            experiment_id,
            model.model_uri,
            partition,
            spec.digest,
            model.result.best_iteration,
            model.model_sha256,
            data_versions_digest=inputs.data_versions_digest,
            training_code_version=inputs.training_code_version,
            train_seconds=model.result.seconds,
            valid=dict(model.valid),
            timings=dict(model.timings),
            tuning_trials=list(model.trials[:5]),
        )

    @classmethod
    def unchanged(
        cls,
        spec: ModelSpec,
        partition: str,
        existing: UnchangedVersion,
        experiment_id: str,
        run_params: Mapping[str, str],
    ) -> RetrainOutcome:
        """The newest registered version again, from what it recorded: its tags, and its run's parameters
        (`best_iteration` for a version registered before it was a tag)."""
        tags, metric = existing.tags, spec.gate_metric
        return cls(
            spec.name,
            existing.version,
            existing.run_id,
            experiment_id,
            existing.model_uri,
            partition,
            spec.digest,
            int(tags.get("best_iteration") or run_params.get("best_iteration") or 0),
            tags.get("model_sha256", ""),
            noop=True,
            noop_reason=existing.reason,
            data_versions_digest=tags["data_versions_digest"],
            training_code_version=tags["training_code_version"],
            valid={metric: float(tags[f"valid_{metric}"])} if f"valid_{metric}" in tags else {},
            registered_by_run=tags.get("dagster_run_id", ""),
        )

    def row(self) -> dict[str, Any]:
        """The stored form: the row evaluation and champion read (and carry on in their own rows)."""
        return {
            "model": self.model,
            "version": self.version,
            "run_id": self.run_id,
            "experiment_id": self.experiment_id,
            "model_uri": self.model_uri,
            "partition": self.partition,
            "spec_digest": self.spec_digest,
            "best_iteration": self.best_iteration,
            "model_sha256": self.model_sha256,
            "noop": self.noop,
            "noop_reason": self.noop_reason,
        }

    @classmethod
    def from_stored(cls, stored: Mapping[Any, Any]) -> RetrainOutcome:
        """The outcome from its stored row, as a table read back gives it (column names need not be `str`).
        Rows stored by earlier releases may lack the later columns: before no-op retrains, every retrain
        trained."""
        row = {str(k): v for k, v in stored.items()}
        return cls(
            str(row["model"]),
            str(row["version"]),
            str(row["run_id"]),
            str(row.get("experiment_id", "")),
            str(row.get("model_uri", "")),
            str(row.get("partition", "")),
            str(row.get("spec_digest", "")),
            int(row.get("best_iteration") or 0),
            str(row.get("model_sha256") or ""),
            noop=bool(row.get("noop", False)),
            noop_reason=str(row.get("noop_reason") or ""),
        )

    def to_metadata(self, run_links: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The materialization's metadata, plain values (mappings and lists are JSON): what the asset's page
        shows and the retrain sensor reads (`reported_noop`). `run_links`: where the run is seen (the tracking
        server's), shown after its id."""
        return {
            "registered_version": self.version,
            "noop": self.noop,
            **({"noop_reason": self.noop_reason} if self.noop else {}),
            "mlflow_run_id": self.run_id,
            **(run_links or {}),
            "best_iteration": self.best_iteration,
            "train_seconds": round(self.train_seconds, 2),
            **{f"valid_{k}": v for k, v in self.valid.items()},
            "model_sha256": self.model_sha256,
            "data_versions_digest": self.data_versions_digest,
            "training_code_version": self.training_code_version,
            **({} if self.noop else {"timings": {k: round(v, 3) for k, v in self.timings.items()}}),
            **({"tuning_best_trials": list(self.tuning_trials)} if self.tuning_trials else {}),
            **({"registered_by_dagster_run": self.registered_by_run} if self.noop else {}),
        }

    @staticmethod
    def reported_noop(metadata: Mapping[str, Any]) -> bool:
        """Whether a model materialization's metadata (plain values) reported a no-op: every release has written
        `noop` (True only on a no-op)."""
        return metadata.get("noop") is True
