"""`<model>/evaluation`: the new version on the held-out newest days; the promotion gates are its blocking
checks, so a version that fails one never reaches `champion` in the same run."""

import time
from typing import TYPE_CHECKING

import dagster as dg

from ml_platform.core.gates import GATE_NAMES
from ml_platform.defs import conventions
from ml_platform.defs.metadata import md_table
from ml_platform.defs.resources import DaskCluster, MlflowTracking, engine_step
from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    from ml_platform.core.evaluation_run import EvaluationRecord

GATE_DESCRIPTIONS = {
    "metric_floor": "The holdout metric meets the spec's floor (gates.min / gates.max).",
    "not_worse_than_champion": "Not worse than the current champion on the same holdout by more than "
    "gates.max_regression.",
    "fairness_gap": "The metric's gap across the sensitive group stays under gates.fairness.max_gap.",
    "prediction_sanity": "Predictions are finite, in range and not constant.",
}


def evaluation_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = conventions.key(spec, "evaluation")
    gates = [
        dg.AssetCheckSpec(
            gate, asset=key, blocking=True, partitions_def=partitions, description=GATE_DESCRIPTIONS[gate]
        )
        for gate in GATE_NAMES
    ]

    @conventions.asset(
        spec,
        "evaluation",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"mlflow", conventions.frame_kind(spec)},
        check_specs=gates,
        description="The new model on the held-out newest days: task metrics, a naive baseline, slices, "
        "fairness, TreeSHAP attributions, the current champion on the same rows, and the model "
        "card. The promotion gates are its blocking checks.",
        ins={
            "model": dg.AssetIn(conventions.key(spec, "model")),
            "training_set": dg.AssetIn(conventions.key(spec, "training_set"), metadata=conventions.frame_input(spec)),
        },
    )
    def evaluation(
        context: dg.AssetExecutionContext,
        mlflow_tracking: MlflowTracking,
        dask_cluster: DaskCluster,
        model,  # a one-row DataFrame: RetrainOutcome.row()
        training_set,
    ):
        import numpy as np
        import pandas as pd

        from ml_platform.core.evaluation_run import evaluate_version, log_evaluation
        from ml_platform.core.retraining import RetrainOutcome

        outcome = RetrainOutcome.from_stored(model.iloc[0].to_dict())
        registry = mlflow_tracking.registry(spec.name)
        with engine_step(spec, dask_cluster, training_set) as (engine, cluster):
            record, candidate = evaluate_version(spec, outcome.version, training_set, registry, engine)
        # A no-op retrain's version keeps the record of its own evaluation: its run, card and gate tags are
        # left as they were (re-logging would overwrite them with this run's); it is still judged here.
        recorded = outcome.noop and bool(registry.gates_of(record.version))
        if not recorded:
            started = time.perf_counter()
            with mlflow_tracking.start_run(context, spec.name, run_id=outcome.run_id):
                log_evaluation(record, candidate)
            registry.mark_gates(record.version, record.passed)
            record.timings["mlflow_run_and_gates_tag"] = (
                time.perf_counter()
                - started
                - record.timings["mlflow_logging"]
                - record.timings["smoke_rows_drift_reference"]
            )
        yield dg.Output(
            pd.DataFrame([record.row(outcome)]),
            metadata={
                **_metadata(record),
                **cluster,
                **(
                    {
                        "mlflow_record": dg.MetadataValue.text(
                            f"kept: v{record.version} was evaluated when it was registered ({outcome.noop_reason})"
                        )
                    }
                    if recorded
                    else {}
                ),
            },
        )
        for gate in record.gates:
            yield dg.AssetCheckResult(
                check_name=gate.name,
                passed=gate.passed,
                description=gate.detail,
                metadata={
                    "detail": gate.detail,
                    **({"value": gate.value} if gate.value is not None and np.isfinite(gate.value) else {}),
                    **({"threshold": gate.threshold} if gate.threshold is not None else {}),
                },
            )

    return evaluation


def _metadata(record: "EvaluationRecord") -> dict:
    """What the asset's page shows at a glance: the metrics, the card, slices, a classifier's confusion matrix
    and the held-out rows left out for a label never seen in training."""
    result, metric = record.result, record.result.metric
    shap = result.attributions.attrs
    return {
        metric: result.value,
        **{f"test_{k}": v for k, v in result.metrics.items()},
        **{f"baseline_{k}": v for k, v in result.baseline.items()},
        **({f"champion_{metric}": result.champion[metric]} if result.champion else {}),
        "version": record.version,
        "model_card": dg.MetadataValue.md(record.card),
        "slices": md_table(result.slices),
        **({"confusion_matrix": md_table(result.confusion.reset_index())} if result.confusion is not None else {}),
        **({"unseen_labels": dg.MetadataValue.json(result.unseen_labels)} if result.unseen_labels else {}),
        "feature_attributions": dg.MetadataValue.json(
            {str(k): round(float(v), 6) for k, v in result.attributions.head(20).items()}
        ),
        **(
            {
                "shap_rows": dg.MetadataValue.text(
                    f"{shap['rows']} of {shap['of_rows']} holdout rows (TreeSHAP sample cap {shap['cap']})"
                )
            }
            if "rows" in shap
            else {}
        ),
        "timings": dg.MetadataValue.json({k: round(v, 3) for k, v in record.timings.items()}),
    }
