"""`<model>/champion`: the registry alias `champion`, moved to a new version only when every gate passed."""

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec


def _description(spec: ModelSpec) -> str:
    rollout = spec.serving.rollout
    condition = (
        ", after a person approves it with the approve job"
        if spec.gates.require_approval
        else f", after it beats the champion online ({rollout.mode})"
        if rollout.mode != "none"
        else ""
    )
    return (
        f"The registry alias `champion` of `{spec.name}`: moved to the new version when every gate passed "
        f"(the old champion keeps `previous`){condition}. Every move is audited."
    )


def champion_asset(spec: ModelSpec, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @conventions.asset(
        spec,
        "champion",
        partitions_def=partitions,
        io_manager_key=conventions.IO_MANAGER_KEY,
        kinds={"mlflow"},
        description=_description(spec),
        ins={"evaluation": dg.AssetIn(conventions.key(spec, "evaluation"))},
    )
    def champion(context: dg.AssetExecutionContext, mlflow_tracking: MlflowTracking, evaluation):  # a DataFrame
        import pandas as pd

        from ml_platform.core.promotion import EvaluatedVersion, decide_promotion

        registry = mlflow_tracking.registry(spec.name)
        evaluated = EvaluatedVersion.from_stored(evaluation.iloc[0].to_dict())
        decision = decide_promotion(
            spec, registry, evaluated, {"dagster_run_id": context.run.run_id, "partition": context.partition_key}
        )
        current = registry.aliases()
        return dg.Output(
            pd.DataFrame(
                [
                    {
                        "champion": current.get("champion"),
                        "previous": current.get("previous"),
                        "challenger": current.get("challenger"),
                        "action": decision.action,
                        "version": evaluated.version,
                        "at": decision.at,
                    }
                ]
            ),
            metadata={
                "action": decision.action,
                "reason": decision.reason,
                "champion_version": str(current.get("champion")),
                "previous_version": str(current.get("previous")),
                "audit": dg.MetadataValue.json(dict(decision.audit)),
            },
        )

    return champion
