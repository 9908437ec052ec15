"""Evaluating a newly registered version, without the orchestrator: score it on the held-out newest days
beside the current champion, run the promotion gates, write the model card, and record it all on the
version's MLflow run, including what later stages need (smoke rows for deploys, the drift reference).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from ml_platform.core.deploy import smoke_rows
from ml_platform.core.drift import training_reference
from ml_platform.core.evaluation import Evaluation, evaluate
from ml_platform.core.gates import GateResult, run_gates
from ml_platform.core.mlflow_store import (CHAMPION, FEATURE_ATTRIBUTIONS, GATE_RESULTS, MODEL_CARD,
                                          REFERENCE_PROFILE, SLICES, SMOKE_ROWS, plot_artifact)
from ml_platform.core.model import Model
from ml_platform.core.model_card import model_card
from ml_platform.core.registry import Registry
from ml_platform.core.training_run import SPLIT, metric_of
from ml_platform.spec import ModelSpec


@dataclass
class EvaluationRecord:
    """A version's holdout evaluation, its gate results and its model card."""

    version: str
    champion_version: str | None   # the champion it was compared with (None: first model, or itself)
    result: Evaluation
    gates: list[GateResult]
    card: str

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def row(self, model_row: dict) -> dict:
        """What the evaluation stage stores: the model's row plus the verdict the champion stage reads."""
        return {**model_row, "metric": self.result.metric, "value": self.result.value,
                "champion_version": self.champion_version,
                "champion_value": (self.result.champion or {}).get(self.result.metric),
                "gates": json.dumps([g.as_dict() for g in self.gates]), "all_gates_passed": self.passed}


def evaluate_version(spec: ModelSpec, version: str, training_set: pd.DataFrame,
                     registry: Registry) -> tuple[EvaluationRecord, Model]:
    """Evaluate a registered `version` on the training set's test days against the current champion."""
    candidate = registry.model(version)
    champion_version = registry.version_of(CHAMPION)
    champion = None
    if champion_version and champion_version != version:
        champion = registry.model(champion_version)
    train = training_set[training_set[SPLIT] == "train"]
    test = training_set[training_set[SPLIT] == "test"].reset_index(drop=True)
    result = evaluate(candidate, train, test, metric_of(spec), spec.gates.slices,
                      spec.gates.fairness.group if spec.gates.fairness else None, champion)
    gates = run_gates(result, spec.gates)
    card = model_card(spec, version, result, gates, _data_section(training_set, spec.timestamp, candidate))
    return EvaluationRecord(version, champion_version, result, gates, card), candidate


def _data_section(training_set: pd.DataFrame, timestamp: str, candidate: Model) -> dict:
    """The model card's data section: window, rows and days per split, data versions."""
    stamps = training_set[timestamp]
    summary = training_set.groupby(SPLIT)[timestamp].agg(["min", "max", "count"])
    return {"window": f"{stamps.min().date()} → {stamps.max().date()}",
            "splits": {k: {"rows": int(r["count"]), "first_day": str(r["min"].date()),
                           "last_day": str(r["max"].date())} for k, r in summary.iterrows()},
            "data_versions": candidate.manifest.get("data_versions", {})}


def log_evaluation(record: EvaluationRecord, candidate: Model, training_set: pd.DataFrame) -> None:
    """Everything about the evaluation on the version's (active) MLflow run, then its gate verdict."""
    import mlflow

    result = record.result
    train = training_set[training_set[SPLIT] == "train"]
    test = training_set[training_set[SPLIT] == "test"].reset_index(drop=True)
    mlflow.log_metrics({f"test_{k}": v for k, v in result.metrics.items()})
    mlflow.log_metrics({f"baseline_{k}": v for k, v in result.baseline.items()})
    if result.champion:
        mlflow.log_metrics({f"champion_{k}": v for k, v in result.champion.items()})
    if result.fairness:
        mlflow.log_metric("fairness_gap", result.fairness["gap"])
    mlflow.log_text(record.card, MODEL_CARD)
    mlflow.log_dict({"gates": [g.as_dict() for g in record.gates]}, GATE_RESULTS)
    mlflow.log_dict(result.attributions.to_dict(), FEATURE_ATTRIBUTIONS)
    mlflow.log_text(result.slices.to_csv(index=False), SLICES)
    mlflow.log_dict({"rows": smoke_rows(candidate, test)}, SMOKE_ROWS)
    mlflow.log_dict(training_reference(candidate, train), REFERENCE_PROFILE)
    for plot, png in result.plots.items():
        mlflow.log_image(_image(png), plot_artifact(plot))
    mlflow.set_tags({f"gate.{g.name}": "passed" if g.passed else "failed" for g in record.gates})


def _image(png_base64: str):
    import base64
    import io

    from PIL import Image

    return Image.open(io.BytesIO(base64.b64decode(png_base64)))
