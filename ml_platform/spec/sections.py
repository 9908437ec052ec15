"""The schema of a model spec: ModelSpec and its sections, as typed, frozen pydantic models.

Each field is checked here on its own (type, range, allowed values); rules across fields are in `rules`.
The `source:` section's models belong to their sources (`ml_platform.core.sources`).

Length: one flat schema a user reads top to bottom beside the README's spec table, rather than split by section.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import re
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    WrapValidator,
    field_validator,
    model_validator,
)

from ml_platform.core.sources import Source
from ml_platform.fields import Duration, StrictModel

if TYPE_CHECKING:
    import pandas as pd

# --- data layer ----------------------------------------------------------------------------------------


class Freshness(StrictModel):
    warn_after: Duration | None = None
    fail_after: Duration


class Partitions(StrictModel):
    cadence: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    start: date | None = None
    end: date | None = None
    freshness: Freshness | None = None


def _one_label(value: Any, handler: Callable[[Any], Any]) -> Any:
    """One clear error for a value that is no label (rather than one per type the label may have)."""
    try:
        return handler(value)
    except ValidationError:
        raise ValueError("a class label: text (quoted when it reads as a boolean), an integer, or true/false") from None


Label = Annotated[str | int | bool, WrapValidator(_one_label)]


class Target(StrictModel):
    """What the model predicts: a column as it is, or an expression over columns (`arr_delay > 15`)."""

    name: str = Field(
        default="target",
        description=(
            "The target's name in the features table, the model's manifest and the endpoint's model description; "
            "defaults to `column` when a column is given, else `target`."
        ),
    )
    column: str | None = None
    expression: str | None = None
    classes: list[Label] | None = Field(
        default=None,
        min_length=2,
        description=(
            "The classes of a classifier, in the order the model's codes, probabilities and metrics use (multiclass; "
            "defaults to sorted). For binary, the two classes."
        ),
    )
    positive: Label | None = Field(
        default=None,
        description=(
            "Binary: the class whose probability the model answers (required for a text target; quote it, since "
            "YAML reads yes/no as booleans). Defaults to the larger of two numeric classes (1, True)."
        ),
    )

    @model_validator(mode="before")
    @classmethod
    def _name_defaults_to_column(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None and isinstance(data.get("column"), str):
            data = {**data, "name": data["column"]}
        return data

    @field_validator("expression")
    @classmethod
    def _parses(cls, expression: str | None) -> str | None:
        if expression is not None:
            try:
                ast.parse(expression, mode="eval")
            except SyntaxError as error:
                raise ValueError(f"not a valid expression ({error.msg})") from None
        return expression

    @property
    def inputs(self) -> list[str]:
        """The columns the target is computed from."""
        if self.column:
            return [self.column]
        if not self.expression:
            return []
        tree = ast.parse(self.expression or "", mode="eval")
        return sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)})


class DerivedFeature(StrictModel):
    """A feature computed by a named Python function `module:function(frame, timestamp=...) -> Series`."""

    name: str
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    type: Literal["numeric", "categorical"] = "numeric"

    def load(self) -> Callable[..., pd.Series]:
        module, _, attribute = self.function.partition(":")
        function: Callable[..., pd.Series] = getattr(importlib.import_module(module), attribute)
        return function


class Features(StrictModel):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    derived: list[DerivedFeature] = Field(default_factory=list)

    @property
    def all_numeric(self) -> list[str]:
        return self.numeric + [d.name for d in self.derived if d.type == "numeric"]

    @property
    def all_categorical(self) -> list[str]:
        return self.categorical + [d.name for d in self.derived if d.type == "categorical"]

    @property
    def names(self) -> list[str]:
        return self.all_numeric + self.all_categorical


class ColumnExpectation(StrictModel):
    dtype: Literal["int", "float", "str", "bool", "datetime"] | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False


class Expectations(StrictModel):
    """The data contract for one partition of raw data; it becomes the Pandera schema."""

    min_rows: int = Field(default=1, ge=0)
    columns: dict[str, ColumnExpectation] = Field(default_factory=dict)


# --- training and promotion ----------------------------------------------------------------------------


class Tuning(StrictModel):
    trials: int = Field(default=0, ge=0)
    timeout: Duration = timedelta(minutes=10)


class Training(StrictModel):
    cadence: Literal["daily", "weekly"] = "weekly"
    window_days: int = Field(default=56, ge=3)
    validation_days: int = Field(default=7, ge=1)
    test_days: int = Field(default=7, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    num_boost_round: int = Field(default=500, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    refit: bool = Field(
        default=True,
        description=(
            "After early stopping picks the number of rounds on the validation days, train the final model on the "
            "training and validation days together with exactly that many rounds (the newest days before the "
            "test days are often the most valuable). Test days stay held out for evaluation and the gates. "
            "false: the final model is the early-stopping model, trained on the training days only."
        ),
    )
    seed: int = 42
    tuning: Tuning = Field(default_factory=Tuning)
    engine: Literal["local", "dask"] = Field(
        default="local",
        description=(
            "local: the window is one frame in the step's process. dask: the window stays in Dask partitions on the "
            "workers of a cluster (ML_PLATFORM_DASK_ADDRESS, else a local cluster sized to the machine), LightGBM "
            "trains with lightgbm.dask, and evaluation and batch scoring run on the workers."
        ),
    )


class Fairness(StrictModel):
    group: str
    max_gap: float = Field(ge=0)


class Gates(StrictModel):
    """Promotion gates. `min` bounds a higher-is-better metric (roc_auc), `max` a lower-is-better one (rmse)."""

    metric: str | None = None
    min: float | None = None
    max: float | None = None
    max_regression: float = Field(default=0.0, ge=0)
    fairness: Fairness | None = None
    slices: list[str] = Field(default_factory=list)
    require_approval: bool = False


# --- monitoring and serving ----------------------------------------------------------------------------


class Drift(StrictModel):
    """PSI thresholds; `ignore` lists features (or `prediction`) that vary from day to day by nature."""

    warn: float = Field(default=0.1, ge=0)
    fail: float = Field(default=0.25, ge=0)
    ignore: list[str] = Field(default_factory=list)


class Performance(StrictModel):
    """Live metric and its floor; a new champion trailing the previous one by more than `rollback_tolerance`
    within `rollback_window` of its promotion is rolled back (the endpoint scores the previous champion beside
    it for that long, so both are judged on the same outcomes)."""

    metric: str | None = None
    floor: float | None = None
    label_delay: Duration = timedelta(days=1)
    rollback_tolerance: float = Field(default=0.02, ge=0)
    rollback_window: Duration = timedelta(days=3)
    rollback_min_rows: int = Field(default=200, ge=1)


class Monitoring(StrictModel):
    drift: Drift = Field(default_factory=Drift)
    retrain_cooldown: Duration = timedelta(days=3)
    performance: Performance = Field(default_factory=Performance)
    model_freshness: Freshness | None = None
    endpoint_freshness: Freshness | None = None


class Rollout(StrictModel):
    """How a gated challenger meets live traffic before it becomes champion.

    `none` promotes on the offline gates alone. `shadow` (the challenger scores every request, the champion
    answers) and `canary` (the challenger answers a `fraction`, sticky by `key`) hold a gated challenger back;
    it is promoted when, over `trial_days` days with labels, it beats the champion on the same outcomes by at
    least `min_improvement` on `min_rows` or more labelled rows, and retired otherwise.
    """

    mode: Literal["none", "shadow", "canary"] = "none"
    fraction: float = Field(default=0.1, gt=0, lt=1)
    key: str | None = None
    # Serialized under its old name only for ModelSpec.digest (see there).
    trial_days: int = Field(default=3, ge=1, serialization_alias="window_days")
    min_rows: int = Field(default=500, ge=1)
    min_improvement: float = Field(default=0.0, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _renamed_window_days(cls, data: Any, info: ValidationInfo) -> Any:
        """`window_days` is the old name of `trial_days` (it read like training.window_days): still accepted,
        and reported to the loader (the validation context's `deprecations`) so `ml-platform check` shows it."""
        if not isinstance(data, dict) or "window_days" not in data:
            return data
        if "trial_days" in data:
            raise ValueError(
                "serving.rollout.trial_days alone; serving.rollout.window_days is its deprecated old name: remove it"
            )
        if isinstance(info.context, dict):
            info.context.setdefault("deprecations", []).append(
                "serving.rollout.window_days is deprecated: rename it to serving.rollout.trial_days"
            )
        data = dict(data)
        data["trial_days"] = data.pop("window_days")
        return data


class Limits(StrictModel):
    """What one request may cost the endpoint; each limit answers with its own status and closes nothing else.

    `header_bytes` caps a request's headers (431), `header_timeout` the time to receive them and how long an
    idle keep-alive connection is kept, `body_bytes` the body (413, connection closed), `body_timeout` the time
    to receive it (408), `in_flight` the requests one worker works on at once (beyond: 503 with `Retry-After`),
    `scoring_timeout` the time to score one request (503, nothing logged)."""

    header_bytes: int = Field(default=16384, ge=8192, le=1_048_576)
    header_timeout: Duration = timedelta(seconds=10)
    body_bytes: int = Field(default=1_000_000, ge=1024)
    body_timeout: Duration = timedelta(seconds=10)
    in_flight: int = Field(default=64, ge=1)
    scoring_timeout: Duration = timedelta(seconds=10)
    retry_after: Duration = timedelta(seconds=1)

    @field_validator("header_timeout", "body_timeout", "scoring_timeout", "retry_after")
    @classmethod
    def _bounded(cls, value: timedelta) -> timedelta:
        if not timedelta(milliseconds=1) <= value <= timedelta(minutes=1):
            raise ValueError("a duration from 1ms to 60s (e.g. '10s')")
        return value


class PredictionLogPolicy(StrictModel):
    """What the prediction log keeps: the model's features (plus the spec's timestamp and key), features in
    `redact` stored as keyed hashes, rows older than `retention` deleted, and the file kept under `max_mb`.
    `fsync` (default true) fsyncs each group commit, so an answered prediction survives a power loss; false
    keeps it through a killed server (the row is in the OS's cache) but not an OS crash, for more requests/s."""

    redact: list[str] = Field(default_factory=list)
    retention: Duration = timedelta(days=90)
    max_mb: int = Field(default=1024, ge=1)
    fsync: bool = True


class Serving(StrictModel):
    target: Literal["local", "docker"] = "local"
    port: int = Field(default=8080, ge=1, le=65535)
    max_rows: int = Field(default=1000, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    unknown_fields: Literal["ignore", "reject"] = "ignore"
    cors_origins: list[str] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    log: PredictionLogPolicy = Field(default_factory=PredictionLogPolicy)
    rollout: Rollout = Field(default_factory=Rollout)


# --- schedules -----------------------------------------------------------------------------------------


def _minute(value: Any) -> Any:
    if value is None or (isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 59):
        return value
    raise ValueError(
        "a minute past the hour from 0 to 59; leave schedule.minute out and the model's name picks one, which "
        "spreads a location's models over the hour"
    )


class Schedule(StrictModel):
    """When the model's timed work starts within its hour: the data schedule (02:MM, hourly data every hour at
    :MM), the morning load of `raw` (02:MM) and the retrain schedule (03:MM)."""

    minute: Annotated[int | None, BeforeValidator(_minute)] = Field(
        default=None,
        description="The minute past the hour; default: derived from the model's name (the same minute on every "
        "load) and moved on past minutes that already hold two of the location's models, so many models do not all "
        "start their runs at once.",
    )


# --- the spec ------------------------------------------------------------------------------------------


class ModelSpec(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    owner: str
    task: Literal["binary", "multiclass", "regression"]
    source: Source
    timestamp: str
    key: str | None = None
    partitions: Partitions = Field(default_factory=Partitions)
    target: Target
    features: Features
    expectations: Expectations = Field(default_factory=Expectations)
    training: Training = Field(default_factory=Training)
    gates: Gates = Field(default_factory=Gates)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    serving: Serving = Field(default_factory=Serving)
    schedule: Schedule = Field(default_factory=Schedule)

    # Where the spec came from, for error messages and lineage; not part of the YAML.
    path: Path | None = Field(default=None, exclude=True)
    # Deprecated fields the file uses, one sentence each naming the fix (set by load_spec); not part of the YAML.
    deprecations: tuple[str, ...] = Field(default=(), exclude=True)

    @field_validator("owner")
    @classmethod
    def _owner(cls, owner: str) -> str:
        """Dagster's rule for asset owners, checked here so a wrong owner fails `ml-platform check` instead of
        the code location's load."""
        if re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,7}", owner) or (
            owner.startswith("team:") and len(owner) > 5
        ):
            return owner
        raise ValueError(
            "an email address (ml@example.com) or a team as 'team:name' (what Dagster accepts as an asset owner)"
        )

    @property
    def digest(self) -> str:
        """A short hash of the spec's content; it changes exactly when the spec's meaning does."""
        # by_alias: renamed fields hash under their old names, so a rename does not change every asset's version
        # training.engine hashes only when it is not the default, so adding the field kept every digest
        # likewise target.classes and target.positive only when they are set
        # schedule: when runs start, not what they produce, so never hashed
        exclude: dict[str, Any] = {
            "path": True,
            "schedule": True,
            **({"training": {"engine"}} if self.training.engine == "local" else {}),
        }
        unset = {field for field in ("classes", "positive") if getattr(self.target, field) is None}
        if unset:
            exclude["target"] = unset
        text = self.model_dump_json(exclude=exclude, by_alias=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]
