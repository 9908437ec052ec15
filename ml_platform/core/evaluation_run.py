"""Evaluating a newly registered version, without the orchestrator: score it on the held-out newest days
beside the current champion, run the promotion gates, write the model card, and record it all on the
version's MLflow run, including what later stages need (smoke rows for deploys, the drift reference).
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform.core.deploy import smoke_rows
from ml_platform.core.drift import training_reference
from ml_platform.core.engine import LOCAL, Engine
from ml_platform.core.evaluation import Evaluation, evaluate, held_out, make_plots
from ml_platform.core.gates import GateResult, run_gates
from ml_platform.core.holdout import Holdout
from ml_platform.core.mlflow_store import (
    CHAMPION,
    FEATURE_ATTRIBUTIONS,
    GATE_RESULTS,
    MODEL_CARD,
    REFERENCE_PROFILE,
    SLICES,
    SMOKE_ROWS,
    active_run_id,
    log_batch,
    plot_artifact,
)
from ml_platform.core.model import Model
from ml_platform.core.model_card import model_card
from ml_platform.core.registry import Registry
from ml_platform.core.trace import version_links
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

    from ml_platform.core.dask_frames import StoredPartitions
    from ml_platform.core.retraining import RetrainOutcome

CONFUSION_MATRIX = "confusion_matrix.csv"  # a classifier's run artifact: actual (rows) by predicted (columns)


@dataclass
class EvaluationRecord:
    """A version's holdout evaluation, its gate results and its model card."""

    version: str
    champion_version: str | None  # the champion it was compared with (None: first model, or itself)
    result: Evaluation
    gates: list[GateResult]
    card: str
    timings: dict[str, float] = field(default_factory=dict)  # seconds per part (scoring, SHAP, plots, card ...)
    holdout: Holdout | None = field(default=None, repr=False)

    @property
    def passed(self) -> bool:
        return all(gate.passed for gate in self.gates)

    def row(self, outcome: RetrainOutcome) -> dict[str, Any]:
        """What the evaluation stage stores: the model step's row plus the verdict the champion stage reads."""
        return {
            **outcome.row(),
            "metric": self.result.metric,
            "value": self.result.value,
            "champion_version": self.champion_version,
            "champion_value": (self.result.champion or {}).get(self.result.metric),
            "gates": json.dumps([g.as_dict() for g in self.gates]),
            "all_gates_passed": self.passed,
        }


def evaluate_version(
    spec: ModelSpec,
    version: str,
    training_set: pd.DataFrame | StoredPartitions,
    registry: Registry,
    engine: Engine = LOCAL,
) -> tuple[EvaluationRecord, Model]:
    """Evaluate a registered `version` on the training set's test days against the current champion. The plots
    are rendered once, here; the model card, the Dagster metadata and the MLflow run reuse the same PNGs.
    `training_set` is the frame of `engine`, which reads its held-out days (`Engine.holdout`: on the Dask
    workers for the Dask engine). Held-out rows whose label the candidate never saw in training are left out of
    the metrics and plots and counted (`Evaluation.unseen_labels`)."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    candidate = registry.model(version)
    champion_version = registry.version_of(CHAMPION)
    champion = None
    if champion_version and champion_version != version:
        champion = registry.model(champion_version)
    timings["load_models"] = time.perf_counter() - started
    started = time.perf_counter()
    holdout = engine.holdout(spec, training_set, candidate, champion)
    result = evaluate(
        candidate,
        holdout.train,
        holdout.test,
        spec.gate_metric,
        spec.gates.slices,
        spec.gates.fairness.group if spec.gates.fairness else None,
        champion,
        plots=False,
        predictions=holdout.predictions,
        champion_predictions=holdout.champion_predictions,
        explain=holdout.explain,
    )
    timings["shap"] = result.attributions.attrs.get("seconds", 0.0)
    timings["scoring_slices"] = time.perf_counter() - started - timings["shap"]
    started = time.perf_counter()
    result.plots = make_plots(candidate, *held_out(candidate, holdout.test, result.predictions), result.attributions)
    timings["plots"] = time.perf_counter() - started
    started = time.perf_counter()
    gates = run_gates(result, spec.gates)
    links = version_links(registry.client, spec.name, version, data_versions=False)
    card = model_card(spec, version, result, gates, holdout.data, links=links)
    timings["gates_model_card"] = time.perf_counter() - started
    return EvaluationRecord(version, champion_version, result, gates, card, timings, holdout), candidate


def log_evaluation(record: EvaluationRecord, candidate: Model) -> None:
    """Everything about the evaluation on the version's (active) MLflow run: the metrics and gate tags in one
    `log_batch`, and the model card, gate results, attributions, slices, smoke rows, drift reference and plots
    (the PNG bytes rendered once) in one artifact upload. Adds its parts to `record.timings`."""
    import mlflow

    result = record.result
    started = time.perf_counter()
    holdout = record.holdout
    if holdout is None:
        raise ValueError(f"version {record.version}: the record has no holdout to log (evaluate_version keeps it)")
    documents = {
        GATE_RESULTS: {"gates": [g.as_dict() for g in record.gates]},
        FEATURE_ATTRIBUTIONS: result.attributions.to_dict(),
        SMOKE_ROWS: {"rows": smoke_rows(candidate, holdout.explain)},
        REFERENCE_PROFILE: training_reference(candidate, holdout.train),
    }
    record.timings["smoke_rows_drift_reference"] = time.perf_counter() - started
    started = time.perf_counter()
    shap = result.attributions.attrs
    metrics = {
        **{f"test_{k}": v for k, v in result.metrics.items()},
        **{f"baseline_{k}": v for k, v in result.baseline.items()},
        **{f"champion_{k}": v for k, v in (result.champion or {}).items()},
        **({"fairness_gap": result.fairness["gap"]} if result.fairness else {}),
        **({"unseen_label_rows": sum(result.unseen_labels.values())} if result.unseen_labels else {}),
    }
    tags = {
        **{f"gate.{g.name}": "passed" if g.passed else "failed" for g in record.gates},
        **(
            {"shap_rows": f"{shap['rows']} of {shap['of_rows']} holdout rows (cap {shap['cap']})"}
            if "rows" in shap
            else {}
        ),
    }
    log_batch(active_run_id(), metrics=metrics, tags=tags)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        (root / MODEL_CARD).write_text(record.card, encoding="utf-8")
        (root / SLICES).write_text(result.slices.to_csv(index=False), encoding="utf-8")
        if result.confusion is not None:
            (root / CONFUSION_MATRIX).write_text(result.confusion.to_csv(), encoding="utf-8")
        for name, document in documents.items():
            (root / name).write_text(json.dumps(document, indent=2), encoding="utf-8")
        for plot, png in result.plots.items():
            path = root / plot_artifact(plot)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(png))
        mlflow.log_artifacts(str(root))
    record.timings["mlflow_logging"] = time.perf_counter() - started
