"""When monitoring asks for a retrain: which new drift and live-performance evaluations failed, and whether the
cooldown since the last retrain is over; and, once a retrain runs, whether it would only repeat the newest
registered version (a no-op: same data, same spec, same training code).

One episode (several failing days in a row) must start one retrain per cooldown, and every failure must be
seen exactly once even though evaluations resolve out of order (a day still being evaluated, a run that died
before evaluating its checks). That bookkeeping is plain state, kept here without any orchestrator: the
retrain sensor stores it as its cursor and feeds it the check records it reads.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

    from ml_platform.core.dask_frames import StoredPartitions
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


@dataclass
class RetrainCursor:
    """The last evaluation looked at per reason ("drift", "performance") and the time of the last retrain.

    Stored as JSON `{"last_id": {reason: id}, "last_retrain": epoch seconds}` (`last_retrain` absent until the
    first retrain), the shape the sensor has always written, so cursors of running deployments keep working.
    While a requested retrain has not finished, `pending` says which request it was and when the retrain
    before it was (`{"request": id, "before": epoch seconds}`): a request that turns out a no-op gives the
    cooldown back (`settle`).
    """

    last_id: dict[str, int] = field(default_factory=dict)
    last_retrain: float = 0.0
    pending: dict[str, Any] | None = None

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        state = json.loads(text) if text else {}
        pending = state.get("pending")
        return cls(
            last_id={str(k): int(v) for k, v in state.get("last_id", {}).items()},
            last_retrain=float(state.get("last_retrain", 0.0)),
            pending={"request": str(pending["request"]), "before": float(pending.get("before", 0.0))}
            if pending
            else None,
        )

    def to_json(self) -> str:
        state: dict[str, Any] = {"last_id": dict(self.last_id)}
        if self.last_retrain:
            state["last_retrain"] = self.last_retrain
        if self.pending:
            state["pending"] = dict(self.pending)
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
        self.pending = {"request": request, "before": self.last_retrain} if request else None
        self.last_retrain = now

    def settle(self, outcome: str) -> bool:
        """The pending request's outcome: "running" (not over yet: the cooldown holds), "noop" (it only found
        the newest registered version again: not a retrain, so the cooldown is given back) or "retrained" (a
        new version, or a failure: the cooldown stands). True when the pending request is settled now."""
        if self.pending is None or outcome == "running":
            return False
        if outcome == "noop":
            self.last_retrain = self.pending["before"]
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


def retrain_inputs(spec: ModelSpec, training_set: pd.DataFrame | StoredPartitions) -> RetrainInputs:
    """The inputs of a retrain on this stored training set (a frame, or partitions stored by the Dask engine),
    hashed the way the training run logs them."""
    from ml_platform.core.data_versions import versions_digest
    from ml_platform.core.training_run import retrain_versions

    versions = retrain_versions(training_set, spec.timestamp)
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
