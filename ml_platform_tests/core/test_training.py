"""Training, the model artifact and the gates on real flight days (no Dagster)."""

from __future__ import annotations

import base64
from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from ml_platform.core import evaluation as ev
from ml_platform.core.features import build_features
from ml_platform.core.gates import METRIC_FLOOR, NOT_WORSE, SANITY, run_gates
from ml_platform.core.model import Model
from ml_platform.core.model_card import model_card
from ml_platform.core.sources import nycflights13
from ml_platform.core.training import Split, TrainingError, split_by_time, train
from ml_platform.spec import BUNDLED_SPECS, load_spec

SPEC = load_spec(BUNDLED_SPECS / "flight_delay.yaml")


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    raw = nycflights13.load(nycflights13.Replay(0), datetime(2013, 5, 1), datetime(2013, 6, 26))
    return build_features(raw, SPEC)[0]


@pytest.fixture(scope="module")
def split(features) -> Split:
    return split_by_time(features, SPEC)


@pytest.fixture(scope="module")
def trained(split):
    return train(SPEC, split)


def test_split_is_by_time_newest_days_held_out(split):
    days = {name: set(getattr(split, name)["scheduled_departure"].dt.date) for name in ("train", "valid", "test")}
    assert len(days["test"]) == SPEC.training.test_days and len(days["valid"]) == SPEC.training.validation_days
    assert max(days["train"]) < min(days["valid"]) and max(days["valid"]) < min(days["test"])
    summary = split.summary("scheduled_departure", "delayed", "binary")
    assert summary["test"]["last_day"] == "2013-06-25" and 0 < summary["train"]["positive_rate"] < 1


def test_training_is_deterministic(split, trained, tmp_path):
    again = train(SPEC, split)
    first = trained.model.save(tmp_path / "a") / "model.txt"
    second = again.model.save(tmp_path / "b") / "model.txt"
    assert first.read_bytes() == second.read_bytes()


def test_the_artifact_is_native_text_and_json_and_scores_consistently(trained, split, tmp_path):
    folder = trained.model.save(tmp_path / "model")
    assert sorted(p.name for p in folder.iterdir()) == ["manifest.json", "model.txt"]
    assert (folder / "model.txt").read_text().startswith("tree")
    loaded = Model.load(folder)
    test = split.test.head(300)
    batch = loaded.predict(test)
    assert np.array_equal(batch, trained.model.predict(test))
    alone = np.array([loaded.predict(test.iloc[[i]])[0] for i in range(40)])
    assert np.array_equal(alone, batch[:40])
    manifest = loaded.manifest
    assert manifest["spec_digest"] == SPEC.digest and manifest["classes"] == [0, 1]
    assert {"lightgbm", "pandas"} <= set(manifest["package_versions"])
    assert "carrier" in manifest["features"]["levels"] and manifest["metrics"]["valid_roc_auc"] > 0.5


def test_unseen_categories_score_as_missing(trained, split):
    rows = split.test.head(5).copy()
    unseen = rows.assign(plane_manufacturer="NEVER SEEN")
    missing = rows.assign(plane_manufacturer=np.nan)
    assert np.array_equal(trained.model.predict(unseen), trained.model.predict(missing))
    assert trained.model.encoder.unseen(unseen)["plane_manufacturer"] == 5
    with pytest.raises(KeyError, match="carrier"):
        trained.model.predict(rows.drop(columns=["carrier"]))


def test_contributions_sum_to_the_margin(trained, split):
    rows = split.test.head(20)
    contributions = trained.model.contributions(rows)
    margin = trained.model.booster.predict(trained.model.encoder.transform(rows), raw_score=True)
    assert np.allclose(contributions.sum(axis=1).to_numpy(), margin, atol=1e-6)


def test_training_errors_name_the_spec_field(features):
    with pytest.raises(TrainingError, match="training.window_days"):
        split_by_time(features.iloc[0:0], SPEC)
    few_days = features[features["scheduled_departure"] < "2013-05-08"]
    with pytest.raises(TrainingError, match="training.window_days"):
        split_by_time(few_days, SPEC)
    one_class = split_by_time(features.assign(delayed=0), SPEC)
    with pytest.raises(TrainingError, match="target"):
        train(SPEC, one_class)
    bad = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={"params": {"num_leaves": -5}})})
    with pytest.raises(TrainingError, match="training.params"):
        train(bad, split_by_time(features, SPEC))


def test_optuna_search_returns_sorted_trials(split):
    from ml_platform.core.training import tune

    spec = SPEC.model_copy(update={"training": SPEC.training.model_copy(update={
        "tuning": SPEC.training.tuning.model_copy(update={"trials": 2})})})
    best, trials = tune(spec, split, lambda model, frame: ev.score(model, frame, "roc_auc"))
    assert len(trials) == 2 and trials[0]["value"] >= trials[1]["value"]
    assert set(best) >= {"num_leaves", "learning_rate"}


def test_evaluation_metrics_slices_fairness_and_card(trained, split):
    result = ev.evaluate(trained.model, split.train, split.test, "roc_auc", ["origin", "carrier"], "origin")
    assert result.metrics["roc_auc"] > 0.6 and abs(result.baseline["roc_auc"] - 0.5) < 1e-9
    assert set(result.slices["column"]) == {"origin", "carrier"} and (result.slices["rows"] >= 30).all()
    assert result.fairness["group"] == "origin" and result.fairness["gap"] >= 0
    assert list(result.attributions.index[:1]) and result.attributions.is_monotonic_decreasing
    assert base64.b64decode(result.plots["curves"])[:4] == b"\x89PNG"
    card = model_card(SPEC, "7", result, run_gates(result, SPEC.gates), {"window": "w", "splits": {}})
    for text in ("# Model card: flight_delay v7", SPEC.owner, "## Slices", "## Fairness", "## Gates", "## Limits",
                 "data:image/png;base64,"):
        assert text in card


def test_gates_stop_a_model_trained_on_shuffled_labels(split, trained):
    rng = np.random.default_rng(0)
    shuffled = Split(split.train.assign(delayed=rng.permutation(split.train["delayed"].to_numpy())),
                     split.valid.assign(delayed=rng.permutation(split.valid["delayed"].to_numpy())), split.test)
    noise = train(SPEC, shuffled).model
    result = ev.evaluate(noise, shuffled.train, split.test, "roc_auc", [], None, champion=trained.model,
                         plots=False)
    gates = {g.name: g for g in run_gates(result, SPEC.gates)}
    assert not gates[METRIC_FLOOR].passed and result.metrics["roc_auc"] < 0.6
    assert not gates[NOT_WORSE].passed


def test_gates_pass_a_good_model_and_catch_constant_predictions(trained, split):
    result = ev.evaluate(trained.model, split.train, split.test, "roc_auc", ["origin"], "origin",
                         champion=trained.model, plots=False)
    gates = {g.name: g for g in run_gates(result, SPEC.gates)}
    assert gates[NOT_WORSE].passed and gates[SANITY].passed
    assert ev.sanity("binary", np.full(10, 0.3))["constant"]
    assert not ev.sanity("binary", np.array([0.1, np.nan]))["finite"]
    assert not ev.sanity("binary", np.array([0.1, 1.5]))["in_range"]
