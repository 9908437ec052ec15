"""`ml-platform reproduce` against the review tests' production home: champion v1 of flight_delay, trained and
registered by a real Dagster retrain on stored Parquet partitions, with its recipe in a real MLflow SQLite store.
The version is retrained from that recipe with real LightGBM and compared; nothing is written to the registry.
Partitions are changed or removed in a copy of the storage, never in the shared home."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ml_platform.cli import main
from ml_platform.core import training
from ml_platform.core.recipe import RESOLVED_SPEC
from ml_platform.core.reproduce import Verdict, reproduce
from ml_platform_tests.review.conftest import Production

# One worker with the review modules: they share the session's production home (a trained champion).
pytestmark = pytest.mark.xdist_group("review")


def _registry(production: Production) -> dict:
    client = production.client()
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    return {
        "versions": sorted(v.version for v in client.search_model_versions("name='flight_delay'")),
        "runs": sorted((r.info.run_id, r.info.status) for r in runs),
        "aliases": dict(client.get_registered_model("flight_delay").aliases),
    }


def _storage_copy(production: Production, folder: Path) -> Path:
    """The production storage's flight_delay features, copied so a test may change them."""
    shutil.copytree(Path(production.storage) / "flight_delay" / "features", folder / "flight_delay" / "features")
    return folder


def _trained_days(production: Production, folder: Path) -> list[str]:
    """The days champion v1 trained on (its recorded data versions)."""
    client = production.client()
    run_id = client.get_model_version("flight_delay", "1").run_id
    return sorted(json.loads(Path(client.download_artifacts(run_id, "data_versions.json", str(folder))).read_text()))


def _reproduce(production: Production, version: str, scratch: Path, storage: Path | None = None, **options):
    return reproduce(
        "flight_delay",
        version,
        tracking_uri=production.uri,
        registry_uri=None,
        storage_url=str(storage or production.storage),
        scratch=scratch,
        **options,
    )


def test_the_champion_reproduces_byte_identical_and_nothing_is_written(production, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ML_PLATFORM_HOME", str(production.home))
    for variable in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "ML_PLATFORM_STORAGE"):
        monkeypatch.delenv(variable, raising=False)
    before = _registry(production)

    status = main(["reproduce", "flight_delay@champion", "--json"])

    result = json.loads(capsys.readouterr().out)
    assert status == 0 and result["verdict"] == "identical", result
    registered = production.client().get_model_version("flight_delay", "1")
    assert result["version"] == "1" and result["run_id"] == registered.run_id
    assert result["recorded_sha256"] == result["reproduced_sha256"] == registered.tags["model_sha256"]
    assert result["partitions"] == [] and result["differences"] == []
    assert {m["name"] for m in result["held_out"]} >= {"roc_auc", "log_loss"}
    assert all(m["recorded"] == m["reproduced"] for m in result["held_out"])
    assert _registry(production) == before


def test_a_changed_partition_is_named_and_stops_until_rebuilt_from_the_source(production, tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_HOME", str(production.home))  # the replay's pin, read (copied) from there
    storage = _storage_copy(production, tmp_path / "storage")
    changed = _trained_days(production, tmp_path)[10]
    path = storage / "flight_delay" / "features" / f"{changed}.parquet"
    frame = pq.read_table(path).to_pandas()
    frame.loc[frame.index[:5], "distance"] = frame["distance"].iloc[:5] + 1.0
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)

    stopped = _reproduce(production, "1", tmp_path / "a", storage)

    assert stopped.verdict is Verdict.DIFFERENT and stopped.exit_code == 1, stopped.reason
    assert [c.partition for c in stopped.partitions] == [changed] and f"partition {changed}" in stopped.reason
    assert stopped.reproduced_sha256 is None  # stopped before retraining: its model could only differ

    rebuilt = _reproduce(production, "1", tmp_path / "b", storage, rebuild_data=True)

    assert rebuilt.verdict is Verdict.IDENTICAL, (rebuilt.reason, rebuilt.differences)
    assert [(c.partition, c.restored) for c in rebuilt.partitions] == [(changed, True)]
    assert any(changed in note and "rebuilt" in note for note in rebuilt.notes)


def test_a_package_version_that_differs_from_the_recorded_one_is_in_the_diff(production, tmp_path, monkeypatch):
    installed = training.package_versions()
    monkeypatch.setattr(training, "package_versions", lambda: {**installed, "lightgbm": "0.0.1"})

    result = _reproduce(production, "1", tmp_path)

    assert result.verdict is Verdict.DIFFERENT and result.exit_code == 1
    assert [(d.section, d.name, d.reproduced) for d in result.differences] == [
        ("package_versions", "lightgbm", "0.0.1")
    ]
    assert result.differences[0].recorded == installed["lightgbm"]
    assert result.recorded_sha256 == result.reproduced_sha256  # the model itself is the same


def test_a_missing_partition_or_artifact_cannot_be_reproduced(production, tmp_path, monkeypatch):
    monkeypatch.setenv("ML_PLATFORM_HOME", str(production.home))  # the replay's pin, read (copied) from there
    storage = _storage_copy(production, tmp_path / "storage")
    gone = storage / "flight_delay" / "features" / f"{_trained_days(production, tmp_path)[3]}.parquet"
    gone.unlink()

    missing = _reproduce(production, "1", tmp_path / "a", storage)

    assert missing.verdict is Verdict.CANNOT and missing.exit_code == 2
    assert [(c.partition, c.missing) for c in missing.partitions] == [(gone.stem, True)]
    assert f"partition {gone.stem}: not stored" in missing.reason
    rebuilt = _reproduce(production, "1", tmp_path / "b", storage, rebuild_data=True)
    assert rebuilt.verdict is Verdict.IDENTICAL and [c.partition for c in rebuilt.partitions] == [gone.stem]

    # a version whose run has no recipe: registered in a store of its own, with the model files but no spec
    store = f"sqlite:///{tmp_path / 'other.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.create_experiment("flight_delay", artifact_location=(tmp_path / "artifacts").as_uri())
    run = client.create_run(experiment)
    client.set_terminated(run.info.run_id)
    client.create_registered_model("flight_delay")
    client.create_model_version("flight_delay", f"runs:/{run.info.run_id}/model", run.info.run_id)
    no_recipe = reproduce(
        "flight_delay", "1", tracking_uri=store, registry_uri=None, storage_url=production.storage, scratch=tmp_path
    )
    assert no_recipe.verdict is Verdict.CANNOT and RESOLVED_SPEC in no_recipe.reason
    no_alias = reproduce(
        "flight_delay",
        "@champion",
        tracking_uri=store,
        registry_uri=None,
        storage_url=production.storage,
        scratch=tmp_path,
    )
    assert no_alias.verdict is Verdict.CANNOT and "no alias 'champion'" in no_alias.reason
