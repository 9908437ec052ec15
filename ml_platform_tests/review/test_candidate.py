"""`review_candidate` against a real production home: a champion trained, gated and registered by a real retrain
(Dagster run, MLflow SQLite store, Parquet storage), then changed specs reviewed beside it. Production is only
read: every file of its MLflow store and storage hashes the same before and after a review."""

from __future__ import annotations

import hashlib
import shutil
import socket
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient

from ml_platform.core.gates import GATE_NAMES, NOT_WORSE
from ml_platform.core.mlflow_store import MODEL_FILES
from ml_platform.core.model import Model
from ml_platform.review.candidate import ProductionUnreachable, review_candidate
from ml_platform.spec import ModelSpec, load_spec
from ml_platform_tests.conftest import _write_spec
from ml_platform_tests.review.conftest import FAST, PARAMS, Production

# One worker for the review modules: they share the session's production home (a trained champion).
pytestmark = pytest.mark.xdist_group("review")


def _head(folder: Path, production: Production, overrides: dict) -> ModelSpec:
    return load_spec(_write_spec(folder, {**FAST, **overrides}, base=production.base))


def _hashes(*folders: Path) -> dict[str, str]:
    """sha256 of every file under the folders, by path."""
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def _registry_state(client: MlflowClient) -> dict:
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments])
    return {
        "experiments": sorted(e.experiment_id for e in experiments),
        "runs": sorted((r.info.run_id, r.info.status) for r in runs),
        "versions": sorted(v.version for v in client.search_model_versions("name='flight_delay'")),
        "aliases": dict(client.get_registered_model("flight_delay").aliases),
    }


def _champion_run(production: Production):
    client = production.client()
    return client.get_run(client.get_model_version("flight_delay", "1").run_id)


def test_a_changed_parameter_is_scored_beside_the_champion_and_production_is_untouched(production, tmp_path):
    head = _head(tmp_path / "head", production, {"training.params": {**PARAMS, "num_leaves": 15, "learning_rate": 0.1}})
    before, registry_before = (
        _hashes(production.home / "mlflow", production.home / "storage"),
        _registry_state(production.client()),
    )

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path / "s"
    )

    assert _hashes(production.home / "mlflow", production.home / "storage") == before
    assert _registry_state(production.client()) == registry_before
    run = _champion_run(production)
    champion = Model.load(production.client().download_artifacts(run.info.run_id, MODEL_FILES, str(tmp_path / "c")))
    window = champion.manifest["window"]
    assert review.champion_version == "1" and review.model == "flight_delay"
    assert review.days == (window["first_day"], window["last_day"])
    test_first = (pd.Timestamp(window["last_day"]) - pd.Timedelta(days=head.training.test_days - 1)).date()
    assert review.test_days == (test_first.isoformat(), window["last_day"])
    assert review.data_notes == []  # every stored day matches its recorded version; the data layer is unchanged
    first = review.metrics[0]
    assert first.name == "roc_auc" and {m.name for m in review.metrics} >= {"pr_auc", "log_loss", "brier", "accuracy"}
    # the champion scored on the same held-out days its own evaluation used: the same number
    assert first.champion == pytest.approx(run.data.metrics["test_roc_auc"], abs=1e-9)
    assert first.delta == pytest.approx(first.candidate - first.champion)
    assert first.candidate != first.champion  # another model
    assert [g.name for g in review.gates] == list(GATE_NAMES)
    not_worse = next(g for g in review.gates if g.name == NOT_WORSE)
    assert "vs champion" in not_worse.detail and not_worse.value == pytest.approx(-first.delta)
    assert review.passed == all(g.passed for g in review.gates)
    assert {s.column for s in review.slices} == {"origin", "carrier"}
    assert all(s.champion is not None for s in review.slices)
    assert review.fairness is not None and review.fairness.group == "origin" and review.fairness.champion is not None
    assert 0 < len(review.importance_moves) <= 10
    moves = [abs(m.move) for m in review.importance_moves]
    assert moves == sorted(moves, reverse=True)
    assert review.plots["curves"].startswith(b"\x89PNG") and review.plots["feature_attributions"].startswith(b"\x89PNG")
    assert review.seconds > 0


def test_b_without_a_champion_the_candidate_is_judged_alone_on_the_newest_stored_window(production, tmp_path):
    empty = f"sqlite:///{tmp_path / 'empty' / 'mlflow.db'}"
    (tmp_path / "empty").mkdir()
    MlflowClient(tracking_uri=empty).search_experiments()  # a store where nothing is registered
    head = _head(tmp_path / "head", production, {})

    review = review_candidate(
        head, tracking_uri=empty, registry_uri=empty, storage_url=production.storage, scratch=tmp_path / "s"
    )

    stored = sorted(p.stem for p in (production.home / "storage" / "flight_delay" / "features").glob("*.parquet"))
    assert review.champion_version is None and review.data_notes == []
    assert review.days[1] == stored[-1]
    assert (pd.Timestamp(review.days[1]) - pd.Timestamp(review.days[0])).days == head.training.window_days - 1
    assert all(m.champion is None and m.delta is None for m in review.metrics)
    assert all(s.champion is None for s in review.slices)
    not_worse = next(g for g in review.gates if g.name == NOT_WORSE)
    assert not_worse.passed and "no champion" in not_worse.detail
    assert all(m.champion is None for m in review.importance_moves)


def test_b_a_new_model_is_built_from_the_source_for_the_newest_window_it_has(production, tmp_path):
    from datetime import date, timedelta

    from ml_platform_tests.defs.conftest import OFFSET_WEEKS

    head = _head(tmp_path / "head", production, {"name": "flight_delay_v2"})
    before = _hashes(production.home / "mlflow", production.home / "storage")

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path / "s"
    )

    assert _hashes(production.home / "mlflow", production.home / "storage") == before
    assert not (production.home / "storage" / "flight_delay_v2").exists()
    replay_last_day = date(2013, 12, 31) + timedelta(weeks=OFFSET_WEEKS)
    assert review.champion_version is None and review.days[1] == replay_last_day.isoformat()
    assert review.data_notes == [
        "features built from the source in a scratch store for 56 days (production stores no features of "
        "flight_delay_v2 yet)"
    ]
    assert review.metrics[0].name == "roc_auc" and review.metrics[0].champion is None


def test_c_a_partition_changed_since_the_champion_trained_is_named_and_the_review_goes_on(production, tmp_path):
    storage = tmp_path / "storage"
    shutil.copytree(production.home / "storage", storage)
    champion = Model.load(
        production.client().download_artifacts(_champion_run(production).info.run_id, MODEL_FILES, str(tmp_path / "c"))
    )
    day = sorted(champion.manifest["data_versions"])[10]
    path = storage / "flight_delay" / "features" / f"{day}.parquet"
    frame = pd.read_parquet(path)
    frame.loc[0, "temp"] = frame.loc[0, "temp"] + 5.0  # a corrected reading, after the champion trained
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    head = _head(tmp_path / "head", production, {"training.params": {**PARAMS, "num_leaves": 15}})

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=str(storage), scratch=tmp_path / "s"
    )

    assert review.data_notes == [
        f"features {day}: stored data no longer matches the champion's recorded data version "
        "(evaluated on what is stored)"
    ]
    assert review.champion_version == "1" and review.metrics[0].champion is not None and len(review.gates) == 4


def test_d_an_added_feature_rebuilds_the_features_in_scratch(production, tmp_path):
    data = load_spec(production.base)
    numeric = [*data.features.numeric, "wind_gust"]
    head = _head(tmp_path / "head", production, {"features.numeric": numeric})
    before = _hashes(production.home / "mlflow", production.home / "storage")

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path / "s"
    )

    assert _hashes(production.home / "mlflow", production.home / "storage") == before
    (note,) = [n for n in review.data_notes if "rebuilt" in n]
    days = (pd.Timestamp(review.days[1]) - pd.Timestamp(review.days[0])).days + 1  # the champion's 56-day window
    assert f"features rebuilt from the source in a scratch store for {days} days" in note and "adds wind_gust" in note
    assert (
        "wind_gust" in review.features
        and "wind_gust"
        not in Model.load(
            production.client().download_artifacts(
                _champion_run(production).info.run_id, MODEL_FILES, str(tmp_path / "c")
            )
        ).encoder.names
    )
    rebuilt = sorted((tmp_path / "s").rglob("features/*.parquet"))
    assert len(rebuilt) == days and "wind_gust" in pd.read_parquet(rebuilt[0]).columns
    assert review.champion_version == "1" and review.metrics[0].champion is not None


def test_d_a_changed_target_shows_in_a_partition_built_again_from_the_source(production, tmp_path):
    head = _head(tmp_path / "head", production, {"target.expression": "arr_delay > 30"})

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path / "s"
    )

    (note,) = review.data_notes
    assert note.startswith("features rebuilt from the source in a scratch store for 56 days")
    assert "built from the source with this spec differ from the stored ones" in note
    # both models judged on the new labels: the champion's number is not the one its own evaluation recorded
    assert review.metrics[0].champion != pytest.approx(_champion_run(production).data.metrics["test_roc_auc"])


def test_d_a_dropped_feature_still_scores_the_champion_with_its_stored_values(production, tmp_path):
    data = load_spec(production.base)
    head = _head(
        tmp_path / "head", production, {"features.numeric": [n for n in data.features.numeric if n != "distance"]}
    )

    review = review_candidate(
        head, tracking_uri=production.uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path / "s"
    )

    assert any("rebuilt" in n and "removes distance" in n for n in review.data_notes), review.data_notes
    assert "the champion was scored with distance from the stored features (the change drops them)" in review.data_notes
    assert "distance" not in review.features
    # the same rows and values its own evaluation scored
    assert review.metrics[0].champion == pytest.approx(_champion_run(production).data.metrics["test_roc_auc"], abs=1e-9)


def test_e_an_unreachable_tracking_server_is_named(production, tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    head = _head(tmp_path / "head", production, {})
    started = time.perf_counter()
    with pytest.raises(ProductionUnreachable, match=uri):
        review_candidate(head, tracking_uri=uri, registry_uri=None, storage_url=production.storage, scratch=tmp_path)
    assert time.perf_counter() - started < 30


def test_missing_storage_and_a_missing_store_are_named(production, tmp_path):
    head = _head(tmp_path / "head", production, {})
    gone = tmp_path / "no_storage"
    with pytest.raises(ProductionUnreachable, match=str(gone)):
        review_candidate(head, tracking_uri=production.uri, registry_uri=None, storage_url=str(gone), scratch=tmp_path)
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    with pytest.raises(ProductionUnreachable, match="nowhere"):
        review_candidate(
            head, tracking_uri=missing, registry_uri=None, storage_url=production.storage, scratch=tmp_path
        )
    assert not (tmp_path / "nowhere").exists()
