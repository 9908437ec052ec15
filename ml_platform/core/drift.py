"""Drift statistics: a day of live inputs (or predictions) against the model's training reference.

The reference is summarized once per model version (`reference_profile`) and stored with it: quantile bin
edges and proportions for numeric features, level proportions for categorical ones, missing rates. A day is
then scored in linear time without touching the training data again:

- PSI, with bins fixed from the reference (deciles for numeric, levels plus an "unseen" bucket for categorical);
- the KS statistic for numeric features, on the reference's percentile grid (resolution: 1 percentile);
- the chi-square p-value for categorical features;
- the shift in missing-value rate and, for categorical features, the rate of levels never seen in training.

A day is counted, not converted: a numeric column is placed against the reference's cut points in one pass, a
Categorical by its codes, text by hashing; only the few distinct levels are turned into text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy.special import chdtrc  # the chi-square survival function, without importing all of scipy.stats

from ml_platform.core.labels import probability_vectors

if TYPE_CHECKING:
    from ml_platform.core.model import Model

EPSILON = 1e-4
PSI_BINS = 10
KS_GRID = 101
UNSEEN = "__unseen__"
PROBE_ROWS = 4096  # the first rows of a numeric column tell whether its values repeat (hash them) or not

Floats = npt.NDArray[np.float64]
Counts = npt.NDArray[np.int64]


class NumericReference(TypedDict):
    """A numeric feature in training: PSI bin edges (deciles) and proportions, the CDF on a percentile grid."""

    missing_rate: float
    edges: list[float]
    proportions: list[float]
    grid: list[float]
    cdf: list[float]


class CategoricalReference(TypedDict):
    """A categorical feature in training: each level's share (levels named as text), missing values left out."""

    missing_rate: float
    proportions: dict[str, float]


class ReferenceProfile(TypedDict):
    """What a model version's drift is measured against, stored with it as JSON (`reference_profile.json`)."""

    rows: int
    numeric: dict[str, NumericReference]
    categorical: dict[str, CategoricalReference]
    prediction_classes: NotRequired[list[str]]  # a multiclass model's classes, in its probability vectors' order


def reference_profile(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> ReferenceProfile:
    """What drift is measured against; small (a few KB) and JSON-serializable."""
    profile: ReferenceProfile = {"rows": len(frame), "numeric": {}, "categorical": {}}
    for name in numeric:
        values = pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        present = values[~np.isnan(values)]
        if len(present) == 0:
            profile["numeric"][name] = {"missing_rate": 1.0, "edges": [], "proportions": [], "grid": [], "cdf": []}
            continue
        edges = np.unique(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
        proportions = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
        grid = np.unique(np.quantile(present, np.linspace(0, 1, KS_GRID)))
        cdf = np.searchsorted(np.sort(present), grid, side="right") / len(present)
        profile["numeric"][name] = {
            "missing_rate": float(1 - len(present) / len(values)),
            "edges": edges.tolist(),
            "proportions": (proportions / len(present)).tolist(),
            "grid": grid.tolist(),
            "cdf": cdf.tolist(),
        }
    for name in categorical:
        column = frame[name]
        counts = column.dropna().astype(str).value_counts(normalize=True)
        profile["categorical"][name] = {
            "missing_rate": float(column.isna().mean()) if len(column) else 0.0,
            "proportions": {str(k): float(v) for k, v in counts.items()},
        }
    return profile


def _psi(expected: Floats, actual: Floats) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _at_or_below(values: Floats, cuts: Floats) -> Counts:
    """How many values are <= each cut (sorted, finite; NaN is under none), in one pass over the values. Values
    that repeat (most features: small integers, rounded readings) are counted by hashing and only the distinct
    ones are placed; others are placed one by one with a binary search, the slower of the two."""
    probe = values[:PROBE_ROWS]
    if len(pd.unique(probe)) * 8 <= len(probe):
        tally = pd.Series(values, copy=False).value_counts(sort=False)
        slots = np.searchsorted(cuts, tally.index.to_numpy(dtype=np.float64), side="left")
        per_slot = np.bincount(slots, weights=tally.to_numpy(), minlength=len(cuts) + 1).astype(np.int64)
    else:
        per_slot = np.bincount(np.searchsorted(cuts, values, side="left"), minlength=len(cuts) + 1)
    return np.cumsum(per_slot[: len(cuts)])


def _bins_and_cdf(values: Floats, present: int, edges: Floats, grid: Floats) -> tuple[Counts, Counts]:
    """The live values' counts in the PSI bins (bin i: edges[i-1] <= x < edges[i]) and how many are <= each KS
    grid point. One pass: x < e is x <= the float just below e, so both are counts at or below one set of cuts."""
    if not (np.isfinite(edges).all() and np.isfinite(grid).all()):  # infinite training values: place directly
        known = values[~np.isnan(values)]
        bins = np.bincount(np.searchsorted(edges, known, side="right"), minlength=len(edges) + 1)
        below = np.cumsum(np.bincount(np.searchsorted(grid, known, side="left"), minlength=len(grid) + 1))
        return bins, below[: len(grid)]
    just_below_edges = np.nextafter(edges, -np.inf)
    cuts = np.union1d(just_below_edges, grid)
    at_or_below = _at_or_below(values, cuts)
    under_edges = at_or_below[np.searchsorted(cuts, just_below_edges)]
    return np.diff(under_edges, prepend=0, append=present), at_or_below[np.searchsorted(cuts, grid)]


def _numeric(values: Floats, ref: NumericReference) -> dict[str, object]:
    present = len(values) - int(np.count_nonzero(np.isnan(values)))
    missing = float(1 - present / len(values)) if len(values) else 0.0
    out: dict[str, object] = {
        "type": "numeric",
        "rows": len(values),
        "missing_rate": missing,
        "missing_shift": missing - ref["missing_rate"],
        "unseen_rate": None,
        "chi2_p": None,
    }
    if present == 0 or (not ref["edges"] and not ref["proportions"]):
        return {**out, "psi": None, "ks": None}
    edges, grid = np.asarray(ref["edges"], dtype=np.float64), np.asarray(ref["grid"], dtype=np.float64)
    counts, at_or_below_grid = _bins_and_cdf(values, present, edges, grid)
    psi = _psi(np.asarray(ref["proportions"], dtype=np.float64), counts / present)
    # F_live(g) = share of values <= g at each grid point, against the training CDF there
    ks = float(np.max(np.abs(at_or_below_grid / present - np.asarray(ref["cdf"]))))
    return {**out, "psi": psi, "ks": ks}


def _level_counts(values: pd.Series) -> pd.Series:
    """Rows per level, named as text as the reference names levels (`astype(str)`), missing values left out.
    A Categorical is counted by its codes and only its categories become text; text and integers are counted
    by hashing and only the distinct values become text. Other columns (floats: 0.0 and -0.0 hash alike;
    dates: their text depends on the whole column) are converted whole."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        codes = values.cat.codes.to_numpy()
        counts = np.bincount(codes[codes >= 0], minlength=len(values.cat.categories))
        every_category = pd.Categorical.from_codes(np.arange(len(counts)), dtype=values.dtype)
        return _merged(counts, pd.Series(every_category).astype(str))  # as Categorical.astype(str) names them
    if values.dtype.kind in "iubO":
        tally = values.value_counts(sort=False)
        if values.dtype.kind in "iub" or all(type(level) is str for level in tally.index):
            return _merged(tally.to_numpy(), pd.Series(tally.index).astype(str))
    return values.dropna().astype(str).value_counts()


def _merged(counts: npt.NDArray[np.integer], names: pd.Series) -> pd.Series:
    """Counts per level name; distinct values of the same text (1 and "1") are one level, as in the reference."""
    return pd.Series(counts, index=names.to_numpy()).groupby(level=0, sort=False).sum()


def _categorical(values: pd.Series, ref: CategoricalReference) -> dict[str, object]:
    counts = _level_counts(values)
    present = int(counts.sum())
    missing = float(1 - present / len(values)) if len(values) else 0.0
    out: dict[str, object] = {
        "type": "categorical",
        "rows": len(values),
        "missing_rate": missing,
        "missing_shift": missing - ref["missing_rate"],
        "ks": None,
    }
    if present == 0:
        return {**out, "psi": None, "unseen_rate": None, "chi2_p": None}
    levels = list(ref["proportions"])
    known = counts.reindex(levels, fill_value=0).to_numpy(dtype=float)
    unseen = float(present - known.sum())
    actual = np.append(known, unseen) / present
    expected = np.append(np.asarray([ref["proportions"][k] for k in levels]), 0.0)
    observed_counts = actual * present
    expected_counts = np.clip(expected, EPSILON, None) * present
    statistic = float(np.sum((observed_counts - expected_counts) ** 2 / expected_counts))
    return {
        **out,
        "psi": _psi(expected, actual),
        "unseen_rate": unseen / present,
        "chi2_p": float(chdtrc(max(len(levels), 1), statistic)),
    }


def drift_table(live: pd.DataFrame, profile: ReferenceProfile, warn: float, fail: float) -> pd.DataFrame:
    """One row per feature: PSI, KS, chi-square p, missing shift, unseen rate, and a status by PSI."""
    rows: list[dict[str, object]] = []
    for name, numeric in profile["numeric"].items():
        if name not in live.columns:
            rows.append({"feature": name, "type": "numeric", "status": "missing", "rows": 0})
            continue
        values = pd.to_numeric(live[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        rows.append({"feature": name, **_numeric(values, numeric)})
    for name, categorical in profile["categorical"].items():
        if name not in live.columns:
            rows.append({"feature": name, "type": "categorical", "status": "missing", "rows": 0})
            continue
        rows.append({"feature": name, **_categorical(live[name], categorical)})
    table = pd.DataFrame(
        rows,
        columns=[
            "feature",
            "type",
            "rows",
            "psi",
            "ks",
            "chi2_p",
            "missing_rate",
            "missing_shift",
            "unseen_rate",
            "status",
        ],
    )
    if len(table):
        status = np.where(
            table["psi"].isna(),
            "no data",
            np.where(table["psi"] >= fail, "fail", np.where(table["psi"] >= warn, "warn", "ok")),
        )
        table["status"] = np.where(table["status"] == "missing", "missing", status)
    return table.sort_values("psi", ascending=False, na_position="last").reset_index(drop=True)


def training_reference(model: Model, train: pd.DataFrame) -> ReferenceProfile:
    """The drift reference of a model version: its training rows' features and its predictions on them. A
    multiclass `prediction` is the predicted class (as text), a categorical whose levels are the model's
    classes, listed in `prediction_classes` (the order of a logged probability vector)."""
    frame = train[model.encoder.names].copy()
    numeric, categorical = list(model.encoder.numeric), list(model.encoder.categorical)
    if model.task == "multiclass":
        frame["prediction"] = [str(label) for label in model.predict_labels(train)]
        categorical.append("prediction")
    else:
        frame["prediction"] = model.predict(train)
        numeric.append("prediction")
    profile = reference_profile(frame, numeric, categorical)
    if model.task == "multiclass":
        profile["prediction_classes"] = [str(label) for label in model.classes]
    return profile


def predicted_class(probabilities: pd.Series, classes: list[str]) -> tuple[pd.Series, int]:
    """Logged multiclass probability vectors as the predicted class (the largest one's, under `classes`, as the
    reference holds it), and how many vectors are not of `len(classes)`: those are left out (missing)."""
    fits = probability_vectors(probabilities, len(classes))
    names = probabilities[fits].map(lambda p: classes[int(np.argmax(p))])
    wrong = int((~fits & probabilities.notna()).sum())
    return names.reindex(probabilities.index).astype(object), wrong


def without(profile: ReferenceProfile, ignored: list[str]) -> ReferenceProfile:
    """The reference without the features (or `prediction`) a spec says vary by nature."""
    return {
        **profile,
        "numeric": {k: v for k, v in profile["numeric"].items() if k not in ignored},
        "categorical": {k: v for k, v in profile["categorical"].items() if k not in ignored},
    }


@dataclass(frozen=True)
class DayDrift:
    """A day's drift table and the verdicts the checks report."""

    table: pd.DataFrame
    rows: int
    source: str  # where the live rows came from
    warn: float
    fail: float

    @property
    def scored(self) -> pd.DataFrame:
        return self.table.dropna(subset=["psi"])

    def over(self, level: str) -> list[str]:
        """Features at or past a level: `fail` lists those past fail; `warn` those past warn (fail included)."""
        flagged = {s: self.scored.loc[self.scored["status"] == s, "feature"].tolist() for s in ("warn", "fail")}
        return flagged["fail"] + (flagged["warn"] if level == "warn" else [])

    def summary(self) -> str:
        fail, warn = self.over("fail"), [f for f in self.over("warn") if f not in self.over("fail")]
        return (
            f"{self.rows} rows from the {self.source}; PSI ≥ {self.fail}: {fail or 'none'}; "
            f"≥ {self.warn}: {warn or 'none'}"
        )

    @property
    def max_psi(self) -> float:
        return float(self.scored["psi"].max()) if len(self.scored) else 0.0

    @property
    def prediction_psi(self) -> float:
        row = self.table.loc[self.table["feature"] == "prediction", "psi"]
        return float(row.iloc[0]) if row.notna().any() else 0.0


def day_drift(live: pd.DataFrame, profile: ReferenceProfile, warn: float, fail: float, source: str) -> DayDrift:
    return DayDrift(drift_table(live, profile, warn, fail), len(live), source, warn, fail)


def psi_chart(table: pd.DataFrame, warn: float, fail: float) -> str:
    """The 20 most drifted features' PSI against both thresholds, as a base64 PNG."""
    import base64
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table.dropna(subset=["psi"]).head(20)[::-1]
    figure, axis = plt.subplots(figsize=(6, max(2.5, 0.25 * len(shown))))
    colors = ["#dc2626" if s == "fail" else "#f59e0b" if s == "warn" else "#16a34a" for s in shown["status"]]
    axis.barh(shown["feature"], shown["psi"], color=colors)
    axis.axvline(warn, color="#f59e0b", linestyle="--")
    axis.axvline(fail, color="#dc2626", linestyle="--")
    axis.set_title("PSI against the training reference")
    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode()
