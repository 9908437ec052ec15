"""`<model>_rollback` and `<model>_approve`: alias moves a person starts from the UI, each audited."""

import dagster as dg

from ml_platform.defs import conventions
from ml_platform.defs.resources import MlflowTracking
from ml_platform.spec import ModelSpec


class RollbackConfig(dg.Config):
    reason: str = "manual rollback"
    requested_by: str = "unknown"


class ApproveConfig(dg.Config):
    version: str
    reason: str = "approved"
    approved_by: str = "unknown"


def registry_jobs(spec: ModelSpec) -> list[dg.JobDefinition]:
    name = spec.name

    @dg.op(name=f"{name}_rollback_champion")
    def rollback_champion(context: dg.OpExecutionContext, config: RollbackConfig, mlflow_tracking: MlflowTracking):
        record = mlflow_tracking.registry(name).rollback(
            config.reason, {"dagster_run_id": context.run.run_id, "requested_by": config.requested_by}
        )
        context.log.info(f"rolled back {name}: champion {record['from_version']} → {record['version']}")
        context.add_output_metadata({"audit": dg.MetadataValue.json(record)})
        return record

    @dg.op(name=f"{name}_approve_challenger")
    def approve_challenger(context: dg.OpExecutionContext, config: ApproveConfig, mlflow_tracking: MlflowTracking):
        from ml_platform.core.registry import RegistryError  # MLflow: imported when the op runs

        try:
            record = mlflow_tracking.registry(name).promote_gated(
                config.version, config.reason, {"dagster_run_id": context.run.run_id, "approved_by": config.approved_by}
            )
        except RegistryError as error:
            raise dg.Failure(str(error)) from None
        context.add_output_metadata({"audit": dg.MetadataValue.json(record)})
        return record

    @dg.job(
        name=f"{name}_rollback",
        description=f"Move `champion` of {name} back to `previous` (audited).",
        tags=conventions.model_tags(spec),
    )
    def rollback_job():
        rollback_champion()

    @dg.job(
        name=f"{name}_approve",
        description=f"Promote a gated `challenger` of {name} to `champion`.",
        tags=conventions.model_tags(spec),
    )
    def approve_job():
        approve_challenger()

    return [rollback_job, approve_job]
