"""Helpers for the Dagster-wiring tests: run the retrain job, read the registry, write endpoint traffic."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import mlflow
import pandas as pd
from mlflow import MlflowClient

from ml_platform.core.model import Model

STAGES = ("training_set", "model", "evaluation", "champion")
KEYS = [dg.AssetKey(["flight_delay", stage]) for stage in STAGES]


def _partitions(defs: dg.Definitions) -> list[str]:
    return defs.resolve_assets_def(KEYS[1]).partitions_def.get_partition_keys()


def _retrain(defs, instance, partition, job: str = "flight_delay_retrain"):
    return defs.resolve_job_def(job).execute_in_process(
        instance=instance, partition_key=partition, raise_on_error=False
    )


def _client(home: Path) -> MlflowClient:
    uri = f"sqlite:///{home / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _aliases(home: Path) -> dict[str, str]:
    client = _client(home)
    try:
        return {k: str(v) for k, v in client.get_registered_model("flight_delay").aliases.items()}
    except mlflow.exceptions.MlflowException:
        return {}


def _versions(home: Path) -> list[str]:
    return sorted(str(v.version) for v in _client(home).search_model_versions("name='flight_delay'"))


def _metadata(result, stage: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == stage]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def _log_traffic(
    home: Path, request_id: str, rows: pd.DataFrame, outputs, version: str = "1", shadow: tuple[str, list] | None = None
) -> None:
    """One answered request in the endpoint's prediction log: real feature rows (key, event time included)."""
    import json as json_module

    from ml_platform.serving.prediction_log import connect

    payload = [
        {k: (None if pd.isna(v) else str(v) if k == "scheduled_departure" else v) for k, v in r.items()}
        for r in rows.drop(columns=["delayed"]).to_dict("records")
    ]
    connection = connect(home / "predictions" / "flight_delay.sqlite")
    connection.execute(
        "INSERT INTO predictions (request_id, ts, model, version, rows, features, outputs, latency_ms, "
        "shadow_version, shadow_outputs, routed) VALUES (?, 0, 'flight_delay', ?, ?, ?, ?, 1.0, ?, ?, "
        "'champion')",
        (
            request_id,
            version,
            len(payload),
            json_module.dumps(payload),
            json_module.dumps(list(outputs)),
            shadow[0] if shadow else None,
            json_module.dumps(list(shadow[1])) if shadow else None,
        ),
    )
    connection.close()


def _day_features(home: Path, day: str, rows: int = 500) -> pd.DataFrame:
    return pd.read_parquet(home / "storage" / "flight_delay" / "features" / f"{day}.parquet").head(rows)


def _log_drifted_traffic(home: Path, day: str, rows: int = 400) -> None:
    """A day of endpoint traffic with shifted weather and routes."""
    shifted = _day_features(home, day, rows).assign(temp=lambda f: f["temp"] + 45, carrier="WN", dest="SFO")
    _log_traffic(home, f"drift-{day}", shifted, [0.9] * len(shifted))


def _served_day(home: Path, day: str, answer: tuple[str, bool], shadow: tuple[str, bool]) -> None:
    """A day of traffic: real scores of v1's model (inverted where asked) logged as `answer` and `shadow`."""
    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    served = _day_features(home, day)
    scores = model.predict(served)
    (answer_version, answer_inverted), (shadow_version, shadow_inverted) = answer, shadow
    _log_traffic(
        home,
        f"{day}-{shadow_version}",
        served,
        (1 - scores if answer_inverted else scores).tolist(),
        version=answer_version,
        shadow=(shadow_version, (1 - scores if shadow_inverted else scores).tolist()),
    )


def ev_roc_auc(y, scores) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, scores))


def _day(partition: str, offset: int) -> str:
    """The ISO day `offset` days after a partition key."""
    return (date.fromisoformat(partition) + timedelta(days=offset)).isoformat()


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, stage: str, day: str | None = None, **kwargs):
    """One stage of flight_delay (for one day when partitioned), in process on the test instance."""
    return defs.resolve_implicit_global_asset_job_def().execute_in_process(
        instance=instance, partition_key=day, asset_selection=[dg.AssetKey(["flight_delay", stage])], **kwargs
    )
