"""What evaluation reads of a training set (`Holdout`), whichever engine stored it, and the model card's data
section."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.core.model import Model
from ml_platform.core.training_set import SPLIT


@dataclass
class Holdout:
    """What evaluation reads of a training set. Local engine: every training and test row. Dask engine: the
    test rows' target and slice columns with their predictions scored on the workers, the training rows as a
    uniform sample (for the baseline and the drift reference) and a sample of test rows with their features
    (for TreeSHAP and the smoke rows); see `dask_scoring`."""

    train: pd.DataFrame
    test: pd.DataFrame
    explain: pd.DataFrame  # test rows with every feature
    data: dict[str, Any]  # the model card's data section
    predictions: np.ndarray | None = None  # the candidate's on `test` (None: scored by evaluate)
    champion_predictions: np.ndarray | None = None

    @classmethod
    def of_frame(cls, training_set: pd.DataFrame, candidate: Model) -> Holdout:
        test = training_set[training_set[SPLIT] == "test"].reset_index(drop=True)
        return cls(
            train=training_set[training_set[SPLIT] == "train"],
            test=test,
            explain=test,
            data=_data_section(training_set, candidate.manifest["timestamp"], candidate),
        )


def _data_section(training_set: pd.DataFrame, timestamp: str, candidate: Model) -> dict[str, Any]:
    """The model card's data section of a training set frame."""
    summary = training_set.groupby(SPLIT)[timestamp].agg(["min", "max", "count"])
    return data_section(
        {
            str(k): {"rows": int(r["count"]), "first_day": str(r["min"].date()), "last_day": str(r["max"].date())}
            for k, r in summary.iterrows()
        },
        candidate,
    )


def data_section(splits: dict[str, dict[str, Any]], candidate: Model) -> dict[str, Any]:
    """The model card's data section: window, rows and days per split, data versions, the fitted rows."""
    splits = {
        k: {"rows": v["rows"], "first_day": v["first_day"], "last_day": v["last_day"]}
        for k, v in splits.items()
        if v["rows"]
    }
    days = [d for v in splits.values() for d in (v["first_day"], v["last_day"])]
    return {
        "window": f"{min(days)} → {max(days)}" if days else "empty",
        "splits": splits,
        "data_versions": candidate.manifest.get("data_versions", {}),
        "fit": candidate.manifest.get("fit"),
    }
