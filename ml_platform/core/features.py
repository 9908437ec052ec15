"""From one partition of raw rows to the model's features and target.

Rows whose target cannot be computed (for flights: cancelled or diverted, no arrival delay) are dropped,
counted and reported, never silently lost. Derived features are plain functions named in the spec.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

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
        frame[name] = _as_category_text(raw[name])
    for derived in spec.features.derived:
        values = pd.Series(derived.load()(raw, timestamp=spec.timestamp), index=raw.index)
        frame[derived.name] = (_as_category_text(values) if derived.type == "categorical"
                               else pd.to_numeric(values, errors="coerce").astype("float64"))
    target, known = _target(raw, spec)
    frame[spec.target.name] = target
    out = frame.loc[known, feature_columns(spec)].reset_index(drop=True)
    return out, FeatureReport(rows_in=len(raw), rows_out=len(out), dropped_no_target=int((~known).sum()))


def _require(raw: pd.DataFrame, spec: ModelSpec) -> None:
    where = {}
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
        raise FeatureError(f"{spec.path or spec.name}: {fields} not in the data; columns present: "
                           f"{', '.join(map(str, raw.columns))}")


def _target(raw: pd.DataFrame, spec: ModelSpec) -> tuple[pd.Series, pd.Series]:
    known = raw[spec.target.inputs].notna().all(axis=1)
    if spec.target.column:
        values = raw[spec.target.column]
    else:
        values = raw.eval(spec.target.expression)
    if spec.task == "binary":
        values = values.astype("float64") if values.dtype != bool else values.astype("int64")
        values = values.where(known).fillna(0).astype("int64")
    elif spec.task == "regression":
        values = pd.to_numeric(values, errors="coerce").astype("float64")
        known &= values.notna()
    return values, known


def _as_category_text(values: pd.Series) -> pd.Series:
    """Categorical values as text (missing stays missing), so levels compare the same across partitions."""
    text = values.astype("object")
    mask = text.notna()
    text = text.where(~mask, text[mask].astype(str)) if mask.any() else text
    return text.where(mask, np.nan).astype("object")
