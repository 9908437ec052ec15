"""Drift statistics: a day of live inputs (or predictions) against the model's training reference.

The reference is summarized once per model version (`reference_profile`) and stored with it: quantile bin
edges and proportions for numeric features, level proportions for categorical ones, missing rates. A day is
then scored in linear time without touching the training data again:

- PSI, with bins fixed from the reference (deciles for numeric, levels plus an "unseen" bucket for categorical);
- the KS statistic for numeric features, on the reference's percentile grid (resolution: 1 percentile);
- the chi-square p-value for categorical features;
- the shift in missing-value rate and, for categorical features, the rate of levels never seen in training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ml_platform.core.labels import probability_vectors

EPSILON = 1e-4
PSI_BINS = 10
KS_GRID = 101
UNSEEN = "__unseen__"


def reference_profile(frame: pd.DataFrame, numeric: list[str], categorical: list[str]) -> dict:
    """What drift is measured against; small (a few KB) and JSON-serializable."""
    profile: dict = {"rows": len(frame), "numeric": {}, "categorical": {}}
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
        values = frame[name]
        counts = values.dropna().astype(str).value_counts(normalize=True)
        profile["categorical"][name] = {
            "missing_rate": float(values.isna().mean()) if len(values) else 0.0,
            "proportions": {str(k): float(v) for k, v in counts.items()},
        }
    return profile


def _psi(expected: np.ndarray, actual: np.ndarray) -> float:
    expected = np.clip(expected, EPSILON, None)
    actual = np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _numeric(values: np.ndarray, ref: dict) -> dict:
    present = values[~np.isnan(values)]
    missing = float(1 - len(present) / len(values)) if len(values) else 0.0
    out = {
        "type": "numeric",
        "rows": len(values),
        "missing_rate": missing,
        "missing_shift": missing - ref["missing_rate"],
        "unseen_rate": None,
        "chi2_p": None,
    }
    if len(present) == 0 or (not ref["edges"] and not ref["proportions"]):
        return {**out, "psi": None, "ks": None}
    edges = np.asarray(ref["edges"])
    counts = np.bincount(np.searchsorted(edges, present, side="right"), minlength=len(edges) + 1)
    psi = _psi(np.asarray(ref["proportions"]), counts / len(present))
    grid = np.asarray(ref["grid"])
    # F_live(g) = share of values <= g at each grid point: bin index i holds grid[i-1] < x <= grid[i], so the
    # cumulative count up to i is exactly #(x <= grid[i]); no sort of the live day needed.
    counts_up_to = np.cumsum(np.bincount(np.searchsorted(grid, present, side="left"), minlength=len(grid) + 1))
    live_cdf = counts_up_to[: len(grid)] / len(present)
    ks = float(np.max(np.abs(live_cdf - np.asarray(ref["cdf"]))))
    return {**out, "psi": psi, "ks": ks}


def _categorical(values: pd.Series, ref: dict) -> dict:
    from scipy.stats import chi2

    present = values.dropna()
    missing = float(1 - len(present) / len(values)) if len(values) else 0.0
    out = {
        "type": "categorical",
        "rows": len(values),
        "missing_rate": missing,
        "missing_shift": missing - ref["missing_rate"],
        "ks": None,
    }
    if len(present) == 0:
        return {**out, "psi": None, "unseen_rate": None, "chi2_p": None}
    counts = present.astype(str).value_counts()
    levels = list(ref["proportions"])
    known = counts.reindex(levels, fill_value=0).to_numpy(dtype=float)
    unseen = float(counts.sum() - known.sum())
    actual = np.append(known, unseen) / len(present)
    expected = np.append(np.asarray([ref["proportions"][k] for k in levels]), 0.0)
    observed_counts = actual * len(present)
    expected_counts = np.clip(expected, EPSILON, None) * len(present)
    statistic = float(np.sum((observed_counts - expected_counts) ** 2 / expected_counts))
    return {
        **out,
        "psi": _psi(expected, actual),
        "unseen_rate": unseen / len(present),
        "chi2_p": float(chi2.sf(statistic, max(len(levels), 1))),
    }


def drift_table(live: pd.DataFrame, profile: dict, warn: float, fail: float) -> pd.DataFrame:
    """One row per feature: PSI, KS, chi-square p, missing shift, unseen rate, and a status by PSI."""
    rows = []
    for name, ref in profile["numeric"].items():
        if name not in live.columns:
            rows.append({"feature": name, "type": "numeric", "status": "missing", "rows": 0})
            continue
        values = pd.to_numeric(live[name], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        rows.append({"feature": name, **_numeric(values, ref)})
    for name, ref in profile["categorical"].items():
        if name not in live.columns:
            rows.append({"feature": name, "type": "categorical", "status": "missing", "rows": 0})
            continue
        rows.append({"feature": name, **_categorical(live[name], ref)})
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


def training_reference(model, train: pd.DataFrame) -> dict:
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


def without(profile: dict, ignored: list[str]) -> dict:
    """The reference without the features (or `prediction`) a spec says vary by nature."""
    return {
        **profile,
        **{kind: {k: v for k, v in profile[kind].items() if k not in ignored} for kind in ("numeric", "categorical")},
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


def day_drift(live: pd.DataFrame, profile: dict, warn: float, fail: float, source: str) -> DayDrift:
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
