"""From one partition of raw rows to the model's features and target.

Rows whose target cannot be computed (for flights: cancelled or diverted, no arrival delay) are dropped,
counted and reported, never silently lost. Derived features are plain functions named in the spec.

Categorical features are pandas Categoricals of text: each value as `str`, missing stays missing (never the
text "nan"), levels sorted. A partition's levels are its own data's (no model exists yet when features are
built); `concat_partitions` joins partitions under the sorted union of their levels, and a model maps whatever
levels it is given to its training levels (`FeatureEncoder`), so predictions do not depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pandas as pd

from ml_platform.core.labels import as_labels, is_text, positives
from ml_platform.spec import ModelSpec


class FeatureError(ValueError):
    """The data does not have what the spec asks for; the message names the spec field to fix."""


@dataclass(frozen=True)
class FeatureReport:
    rows_in: int
    rows_out: int
    dropped_no_target: int


def feature_columns(spec: ModelSpec) -> list[str]:
    """The columns of the features table, in order: key, timestamp, features, target."""
    return [*([spec.key] if spec.key else []), spec.timestamp, *spec.features.names, spec.target.name]


def build_features(raw: pd.DataFrame, spec: ModelSpec) -> tuple[pd.DataFrame, FeatureReport]:
    """The features and target of raw rows, with a report of what was dropped and why."""
    _require(raw, spec)
    frame = pd.DataFrame(index=raw.index)
    if spec.key:
        frame[spec.key] = raw[spec.key]
    frame[spec.timestamp] = raw[spec.timestamp]
    for name in spec.features.numeric:
        frame[name] = pd.to_numeric(raw[name], errors="coerce").astype("float64")
    for name in spec.features.categorical:
        frame[name] = as_category(raw[name])
    for derived in spec.features.derived:
        values = pd.Series(derived.load()(raw, timestamp=spec.timestamp), index=raw.index)
        frame[derived.name] = (
            as_category(values)
            if derived.type == "categorical"
            else pd.to_numeric(values, errors="coerce").astype("float64")
        )
    target, known = _target(raw, spec)
    frame[spec.target.name] = target
    out = frame.loc[known, feature_columns(spec)].reset_index(drop=True)
    for name in spec.features.all_categorical:  # levels of the rows kept, not of the rows dropped
        out[name] = out[name].cat.remove_unused_categories()
    return out, FeatureReport(rows_in=len(raw), rows_out=len(out), dropped_no_target=int((~known).sum()))


def _require(raw: pd.DataFrame, spec: ModelSpec) -> None:
    where: dict[str, str] = {}
    for field in ("numeric", "categorical"):
        for i, name in enumerate(getattr(spec.features, field)):
            where.setdefault(name, f"features.{field}[{i}]")
    for name in spec.target.inputs:
        where.setdefault(name, "target.column" if spec.target.column else "target.expression")
    if spec.key:
        where.setdefault(spec.key, "key")
    missing = [(name, field) for name, field in where.items() if name not in raw.columns]
    if missing:
        fields = "; ".join(f"{field}: {name!r}" for name, field in missing)
        raise FeatureError(
            f"{spec.path or spec.name}: {fields} not in the data; columns present: {', '.join(map(str, raw.columns))}"
        )


def _target(raw: pd.DataFrame, spec: ModelSpec) -> tuple[pd.Series, pd.Series]:
    known = raw[spec.target.inputs].notna().all(axis=1)
    if spec.target.column:
        values = raw[spec.target.column]
    else:
        assert spec.target.expression is not None, "the spec rules require target.column or target.expression"
        values = cast(pd.Series, raw.eval(spec.target.expression))  # an expression over columns: one per row
    if spec.task == "binary":
        values = _binary_target(values, known, spec)
    elif spec.task == "multiclass":
        if values.dtype == bool:
            raise FeatureError(
                f"{spec.path or spec.name}: {_target_field(spec)}: task 'multiclass' needs counts or "
                "labels, but the target yields booleans (True/False: at most two classes); in pandas "
                "`+` of two comparisons is a logical OR, not a count. Count with `* 1`, e.g. "
                "`(arr_delay > 15) * 1 + (arr_delay > 60) * 1`, or use task: binary"
            )
        values = as_labels(values)
    else:
        values = pd.to_numeric(values, errors="coerce").astype("float64")
        known &= values.notna()
    return values, known


def _target_field(spec: ModelSpec) -> str:
    return "target.column" if spec.target.column else "target.expression"


def _binary_target(values: pd.Series, known: pd.Series, spec: ModelSpec) -> pd.Series:
    """A binary target as its labels: text kept as `str` (the spec names the positive class), numbers and
    booleans as integers (1 or True is the positive class unless the spec says otherwise)."""
    where = f"{spec.path or spec.name}"
    text = is_text(values)
    values = as_labels(values) if text else values
    distinct = pd.unique(values[known].dropna())
    if len(distinct) > 2:
        shown = ", ".join(repr(v) for v in sorted(map(str, distinct))[:5])
        raise FeatureError(
            f"{where}: task: 'binary' but {_target_field(spec)} {spec.target.name!r} has "
            f"{len(distinct)} values ({shown}…); use task: multiclass"
        )
    if not text:
        values = values.astype("float64") if values.dtype != bool else values.astype("int64")
        return values.where(known).fillna(0).astype("int64")
    positive = spec.target.positive
    found = ", ".join(repr(v) for v in sorted(map(str, distinct)))
    if positive is None or isinstance(positive, bool):
        hint = (
            "required when the target is text"
            if positive is None
            else f"{positive!r} is a boolean but the target is text: quote it (YAML reads unquoted yes/no/on/off as "
            "booleans)"
        )
        example = sorted(map(str, distinct))[-1] if len(distinct) else "yes"
        raise FeatureError(
            f"{where}: target.positive: {hint} (found {found}); name the class whose probability "
            f'the model answers, e.g. positive: "{example}"'
        )
    if len(distinct) == 2 and positive not in set(distinct):
        raise FeatureError(
            f"{where}: target.positive: {positive!r} is not a value of {spec.target.name!r} (found {found})"
        )
    return values


def target_summary(values: pd.Series, task: str, positive: str | int | bool | None = None) -> dict[str, Any]:
    """What the target looks like: the positive rate (binary), the class counts (multiclass), the mean."""
    if task == "binary":
        if len(values) == 0:
            return {"positive_rate": 0.0}
        return {"positive_rate": round(float(positives(values, positive).mean()), 4)}
    if task == "multiclass":
        return {"classes": {str(k): int(v) for k, v in values.value_counts().sort_index().items()}}
    return {"target_mean": round(float(values.mean()), 4) if len(values) else 0.0}


def as_category(values: pd.Series) -> pd.Series:
    """Categorical values as a pandas Categorical of text: every value as `str(value)` (so levels compare the same
    across partitions, and 1, 1.0 and True stay three levels), missing stays missing, levels sorted."""
    text = values.astype("object")
    present = text.notna().to_numpy()
    strings = text.to_numpy(dtype=object, copy=True)
    strings[~present] = np.nan
    if present.any():
        strings[present] = text[present].astype(str).to_numpy(dtype=object)
    codes, uniques = pd.factorize(strings, use_na_sentinel=True)  # text only: equal means the same text
    levels = pd.Index(sorted(uniques), dtype=object)
    recode = np.append(levels.get_indexer(uniques), -1)
    categorical = pd.Categorical.from_codes(recode[codes], dtype=pd.CategoricalDtype(levels))
    return pd.Series(categorical, index=values.index, name=values.name)


def concat_partitions(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The rows of several partitions as one frame (in order, fresh index). A column that is categorical in any
    partition stays categorical, under the sorted union of every partition's levels: `pd.concat` alone falls back
    to object text when the partitions' levels differ. Partitions stored as object text (before features were
    categorical, or a column all missing, which Parquet stores untyped) join the same way."""
    if len(frames) == 1:
        return frames[0]
    names = dict.fromkeys(
        name for frame in frames for name, dtype in frame.dtypes.items() if isinstance(dtype, pd.CategoricalDtype)
    )
    if not names:
        return pd.concat(frames, ignore_index=True)
    dtypes = {}
    for name in names:
        levels: set[Any] = set()
        for frame in frames:
            if name in frame.columns:
                column = frame[name]
                levels.update(
                    column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column.dropna().unique()
                )
        try:
            ordered = sorted(levels)
        except TypeError:  # levels of mixed types: a stable order all the same
            ordered = sorted(levels, key=lambda level: (type(level).__name__, str(level)))
        dtypes[name] = pd.CategoricalDtype(pd.Index(ordered, dtype=object))
    return pd.concat(
        [frame.astype({name: dtype for name, dtype in dtypes.items() if name in frame.columns}) for frame in frames],
        ignore_index=True,
    )
