"""MLflow runs a Dagster run left open: a run whose process was killed (its container stopped, the machine
lost) never reached the code that ends its MLflow run, which would stay RUNNING forever and make the
experiments page lie. Once Dagster has recorded the run's outcome, its MLflow runs still RUNNING are ended:
FAILED for a failed run, KILLED for a canceled one, tagged with why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

DAGSTER_RUN_TAG = "dagster_run_id"  # dagster-mlflow's link from an MLflow run to its Dagster run
ENDED_BY_TAG = "ml_platform.ended_by"


@dataclass(frozen=True)
class EndedRun:
    """An MLflow run this sweep ended, and the status it was given."""

    run_id: str
    experiment_id: str
    status: str


def end_abandoned_runs(client: MlflowClient, dagster_run_id: str, status: str, why: str) -> list[EndedRun]:
    """End every MLflow run of `dagster_run_id` still RUNNING as `status` (FAILED or KILLED), in every
    experiment; runs already ended are left as they are."""
    if status not in ("FAILED", "KILLED"):
        raise ValueError(f"status: found {status!r}; allowed: FAILED or KILLED")
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    quoted = dagster_run_id.replace("'", "")
    found = client.search_runs(
        experiments,
        filter_string=f"tags.{DAGSTER_RUN_TAG} = '{quoted}' and attributes.status = 'RUNNING'",
        max_results=1000,
    )
    ended = []
    for run in found:
        client.set_tag(run.info.run_id, ENDED_BY_TAG, why[:500])
        client.set_terminated(run.info.run_id, status)
        ended.append(EndedRun(run.info.run_id, run.info.experiment_id, status))
    return ended
