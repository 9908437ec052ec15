"""`ml-platform check --data`: what a bounded sample of a spec's source contradicts in the spec.

The static check reads no data, so a spec can pass it and still fail at run time: a text binary target without
`target.positive`, a column the files do not have, a dtype against the expectations, a numeric feature holding
text, a multiclass target with a single class. Here a sample of the source (its newest file or first rows, at
most `rows` of them; see each source's `sample`) is read and every such contradiction is named like a static
problem: the field, what it holds, and what would fix it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, cast

import pandas as pd

from ml_platform.core.dtypes import DTYPES
from ml_platform.core.labels import as_labels, is_text, scalar
from ml_platform.core.sources.base import SourceError, as_timestamps
from ml_platform.spec import ModelSpec
from ml_platform.spec.loading import format_problems
from ml_platform.spec.rules import missing_columns

#: How many rows `check --data` reads of each source by default: a day or more of most sources, read in well
#: under a second.
DEFAULT_ROWS = 10_000

_MORE_ROWS = "or, if the sample is too narrow, read more rows with --rows"
_QUOTE = "quoted (YAML reads unquoted yes/no/on/off/true/false as booleans)"


class DataProblem(NamedTuple):
    """One contradiction between the spec and its data: the spec field, its value, and what would fix it."""

    field: str
    found: Any
    fix: str


@dataclass(frozen=True)
class DataCheck:
    """The sample a spec was checked against (rows read, where from) and what it contradicts."""

    rows: int
    where: str
    problems: list[DataProblem]

    def message(self, path: Path | str) -> str:
        """The problems in the static check's style: `<file>: ... (N problems)`, then one line per field."""
        sample = f"sample: {self.rows} rows of {self.where}"
        return format_problems(Path(path), list(self.problems), "the data contradicts the spec", sample)


def check_data(spec: ModelSpec, rows: int = DEFAULT_ROWS) -> DataCheck:
    """Read at most `rows` rows of the spec's source and check the spec against them; a source that cannot be
    read is itself the problem (field `source`), never an exception."""
    try:
        frame, where = spec.source.sample(rows)
    except SourceError as error:
        fix = f"a {spec.source.kind} source `check --data` can read: fix the source section or the data it points to"
        return DataCheck(0, f"the {spec.source.kind} source", [DataProblem("source", str(error), fix)])
    return DataCheck(len(frame), where, data_problems(spec, frame, where))


def data_problems(spec: ModelSpec, frame: pd.DataFrame, where: str = "the sample") -> list[DataProblem]:
    """Everything the sample `frame` (read from `where`) contradicts in the spec, in the order of its fields."""
    found = [DataProblem(*problem) for problem in missing_columns(spec, [str(c) for c in frame.columns], where)]
    if frame.empty:
        return [DataProblem("source", where, "a source holding rows to check the spec against: it holds none"), *found]
    if spec.timestamp in frame.columns:
        try:
            frame = frame.assign(**{spec.timestamp: as_timestamps(frame[spec.timestamp])})
        except SourceError as error:
            found.append(DataProblem("timestamp", spec.timestamp, f"a date-time column ({error})"))
    found += _dtypes(spec, frame, where)
    found += _numeric_features(spec, frame, where)
    found += _derived_features(spec, frame)
    if all(name in frame.columns for name in spec.target.inputs):
        found += _target(spec, frame, where)
    return found


def _examples(values: pd.Series, most: int = 3) -> str:
    present = pd.unique(values.dropna())
    return ", ".join(repr(scalar(v)) for v in present[:most]) + (", …" if len(present) > most else "")


def _dtypes(spec: ModelSpec, frame: pd.DataFrame, where: str) -> list[DataProblem]:
    """Each expected dtype is the dtype of the column in the sample (what the blocking schema check demands)."""
    found = []
    for column, expectation in spec.expectations.columns.items():
        if expectation.dtype is None or column not in frame.columns:
            continue
        dtype = frame[column].dtype
        if DTYPES[expectation.dtype](dtype):
            continue
        fits = next((name for name in ("bool", "int", "float", "datetime", "str") if DTYPES[name](dtype)), None)
        found.append(
            DataProblem(
                f"expectations.columns.{column}.dtype",
                expectation.dtype,
                f"the dtype of {column!r} in {where}, which holds {dtype} values ({_examples(frame[column])})"
                + (f": fix the data, or set dtype: {fits}" if fits else ": fix the data"),
            )
        )
    return found


def _numeric_features(spec: ModelSpec, frame: pd.DataFrame, where: str) -> list[DataProblem]:
    """A numeric feature holds numbers: text would silently become missing values when features are built."""
    found = []
    for i, name in enumerate(spec.features.numeric):
        if name not in frame.columns or pd.api.types.is_numeric_dtype(frame[name].dtype):
            continue
        values = frame[name]
        lost = values.notna() & pd.to_numeric(values, errors="coerce").isna()
        if lost.any():
            found.append(
                DataProblem(
                    f"features.numeric[{i}]",
                    name,
                    f"a column of numbers: {int(lost.sum())} of {int(values.notna().sum())} values in {where} are "
                    f"text ({_examples(values[lost])}), which would become missing values; list it under "
                    "features.categorical, or fix the data",
                )
            )
    return found


def _derived_features(spec: ModelSpec, frame: pd.DataFrame) -> list[DataProblem]:
    """Each derived feature's function runs on the sample (an exception here is one in every `features` run)."""
    found = []
    for i, derived in enumerate(spec.features.derived):
        try:
            derived.load()(frame, timestamp=spec.timestamp)
        except Exception as error:  # the author's code: any failure is reported, with what it said
            found.append(
                DataProblem(
                    f"features.derived[{i}].function",
                    derived.function,
                    f"a function that computes {derived.name!r} from the data (it raised "
                    f"{type(error).__name__}: {error})",
                )
            )
    return found


def _target(spec: ModelSpec, frame: pd.DataFrame, where: str) -> list[DataProblem]:
    """The target computes, and its values suit the task: what `features` and training would refuse."""
    target = spec.target
    field = "target.column" if target.column else "target.expression"
    said = target.column or target.expression
    try:
        computed = frame[target.column] if target.column else cast(pd.Series, frame.eval(target.expression or ""))
    except Exception as error:  # pandas' eval raises whatever the operands raise
        return [DataProblem(field, said, f"an expression {where} can compute ({type(error).__name__}: {error})")]
    known = frame[target.inputs].notna().all(axis=1)
    values = computed[known].dropna()
    if values.empty:  # no labels yet (a label delay): nothing to judge
        return []
    text = is_text(values)
    values = as_labels(values)
    shown = f"{target.name!r} holds {_examples(values, 5)} in {where}"
    if spec.task == "binary":
        return _binary(spec, values, text, shown)
    if spec.task == "multiclass":
        return _multiclass(spec, values, field, said, shown)
    lost = pd.to_numeric(values, errors="coerce").isna()
    if lost.any():
        return [DataProblem(field, said, f"a numeric target for task regression: {shown}; or task binary/multiclass")]
    return []


def _binary(spec: ModelSpec, values: pd.Series, text: bool, shown: str) -> list[DataProblem]:
    distinct = [scalar(v) for v in pd.unique(values)]
    positive = spec.target.positive
    if len(distinct) > 2:
        return [
            DataProblem(
                "task", "binary", f"multiclass: {shown} ({len(distinct)} values); or a target that yields two values"
            )
        ]
    if text and positive is None:
        example = sorted(map(str, distinct))[-1]
        return [
            DataProblem(
                "target.positive",
                None,
                f"required when the target is text ({shown}): the class whose probability the model answers, "
                f'quoted, e.g. positive: "{example}"',
            )
        ]
    if positive is not None and positive not in distinct:  # as training compares: 1 and True are one label
        close = [v for v in distinct if str(v).casefold() == str(positive).casefold()]
        hint = (
            f", {_QUOTE}" if text and isinstance(positive, bool) else f" (did you mean {close[0]!r}?)" if close else ""
        )
        return [DataProblem("target.positive", positive, f"a value of the target ({shown}){hint}; {_MORE_ROWS}")]
    return []


def _multiclass(spec: ModelSpec, values: pd.Series, field: str, said: Any, shown: str) -> list[DataProblem]:
    if values.dtype == bool:
        return [
            DataProblem(field, said, f"counts or labels for task multiclass: {shown} (booleans: at most two classes)")
        ]
    declared = spec.target.classes
    distinct = [scalar(v) for v in pd.unique(values)]
    seen = [c for c in distinct if c in declared] if declared else distinct
    if len(seen) >= 2:
        return []
    if declared:
        return [
            DataProblem(
                "target.classes",
                declared,
                f"classes the target holds, two or more: {shown} ({len(seen)} of the classes); {_MORE_ROWS}",
            )
        ]
    return [DataProblem(field, said, f"a target with two or more classes: {shown}; {_MORE_ROWS}")]
