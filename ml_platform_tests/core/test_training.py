"""Splitting a window by time and training on it: real flight days, deterministic output, errors naming the field."""

from __future__ import annotations

from importlib.metadata import version

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ml_platform.core import evaluation as ev
from ml_platform.core.training import Split, TrainingError, split_by_time, train, tune
from ml_platform.spec import ModelSpec


@pytest.fixture(scope="module")
def trained(spec, split):
    return train(spec, split)


def _with_training(spec: ModelSpec, **update) -> ModelSpec:
    return spec.model_copy(update={"training": spec.training.model_copy(update=update)})


def _days(frame: pd.DataFrame) -> list:
    return sorted(set(frame["scheduled_departure"].dt.date))


def test_split_holds_out_the_newest_days(features, split, spec):
    all_days = _days(features)
    assert len(all_days) == 56
    test_days, valid_days = spec.training.test_days, spec.training.validation_days
    assert _days(split.test) == all_days[-test_days:]
    assert _days(split.valid) == all_days[-(test_days + valid_days):-test_days]
    assert _days(split.train) == all_days[:-(test_days + valid_days)]
    assert str(_days(split.test)[0]) == "2013-06-19" and str(_days(split.test)[-1]) == "2013-06-25"


def test_split_has_no_overlap_and_keeps_time_order(features, split):
    keys = [set(part["flight_id"]) for part in (split.train, split.valid, split.test)]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])
    assert sum(len(k) for k in keys) == len(features) == len(set(features["flight_id"]))
    for part in (split.train, split.valid, split.test):
        assert part["scheduled_departure"].is_monotonic_increasing
        assert list(part.index) == list(range(len(part)))
    assert split.train["scheduled_departure"].max() < split.valid["scheduled_departure"].min()
    assert split.valid["scheduled_departure"].max() < split.test["scheduled_departure"].min()


def test_split_does_not_depend_on_row_order(features, split, spec):
    shuffled = split_by_time(features.sample(frac=1, random_state=3).reset_index(drop=True), spec)
    for name in ("train", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(shuffled, name), getattr(split, name))


def test_the_smallest_window_trains_on_a_single_day(features, spec):
    needed = spec.training.validation_days + spec.training.test_days + 1
    days = _days(features)[-needed:]
    window = features[features["scheduled_departure"].dt.date >= days[0]].reset_index(drop=True)
    split = split_by_time(window, spec)
    assert _days(split.train) == days[:1] and len(_days(split.valid)) == spec.training.validation_days


def test_training_twice_gives_a_byte_identical_model_file(spec, split, trained, tmp_path):
    again = train(spec, split)
    first = trained.model.save(tmp_path / "first") / "model.txt"
    second = again.model.save(tmp_path / "second") / "model.txt"
    assert first.read_bytes() == second.read_bytes()
    assert again.best_iteration == trained.best_iteration


def test_the_result_reports_learning_curve_and_params(spec, trained):
    assert set(trained.learning_curve) == {"train", "valid"}
    assert set(trained.learning_curve["valid"]) == {"auc", "binary_logloss"}
    assert len(trained.learning_curve["valid"]["auc"]) >= trained.best_iteration >= 1
    assert trained.params["objective"] == "binary" and trained.params["deterministic"] is True
    for key, value in spec.training.params.items():
        assert trained.params[key] == value
    assert trained.seconds > 0


def test_the_manifest_records_spec_classes_and_versions(spec, split, trained):
    manifest = trained.model.manifest
    assert manifest["spec_digest"] == spec.digest
    assert manifest["classes"] == [0, 1]
    assert manifest["model"] == "flight_delay" and manifest["task"] == "binary" and manifest["target"] == "delayed"
    versions = manifest["package_versions"]
    assert versions["lightgbm"] == lgb.__version__ == version("lightgbm")
    assert versions["pandas"] == pd.__version__ and versions["numpy"] == np.__version__
    assert manifest["rows"] == {"train": len(split.train), "valid": len(split.valid), "test": len(split.test)}
    assert manifest["window"] == {"first_day": "2013-05-01", "last_day": "2013-06-25"}
    assert manifest["best_iteration"] == trained.best_iteration
    assert manifest["nullable"]["carrier"] is False and manifest["nullable"]["plane_year"] is True
    assert 0.5 < manifest["metrics"]["valid_roc_auc"] < 1


def test_an_empty_window_names_window_days(features, spec):
    with pytest.raises(TrainingError, match=r"training\.window_days") as caught:
        split_by_time(features.iloc[0:0], spec)
    assert "flight_delay.yaml" in str(caught.value)


def test_too_few_days_names_window_days(features, spec):
    needed = spec.training.validation_days + spec.training.test_days + 1
    days = _days(features)[:needed - 1]
    window = features[features["scheduled_departure"].dt.date <= days[-1]]
    with pytest.raises(TrainingError, match=r"training\.window_days") as caught:
        split_by_time(window, spec)
    assert f"holds {needed - 1} day(s)" in str(caught.value) and f"at least {needed}" in str(caught.value)


def test_a_single_class_target_names_target(features, spec):
    one_class = split_by_time(features.assign(delayed=0), spec)
    with pytest.raises(TrainingError, match=r": target: .*single class"):
        train(spec, one_class)


def test_more_than_two_classes_for_a_binary_task_names_task(split, spec):
    three = Split(split.train.assign(delayed=np.arange(len(split.train)) % 3), split.valid, split.test)
    with pytest.raises(TrainingError, match=r": task: .*multiclass"):
        train(spec, three)


@pytest.mark.parametrize("params", [{"num_leaves": -5}, {"learning_rate": -0.1}, {"feature_fraction": 2.0}])
def test_parameters_lightgbm_rejects_name_training_params(spec, split, params):
    bad = _with_training(spec, params={**spec.training.params, **params})
    with pytest.raises(TrainingError, match=r"training\.params: LightGBM rejected"):
        train(bad, split)


def test_tuning_runs_optuna_and_sorts_trials_best_first(spec, split):
    tuned = _with_training(spec, tuning=spec.training.tuning.model_copy(update={"trials": 2}))
    best, trials = tune(tuned, split, lambda model, frame: ev.score(model, frame, "roc_auc"))
    assert len(trials) == 2 and {t["number"] for t in trials} == {0, 1}
    assert trials[0]["value"] >= trials[1]["value"]
    assert {k: trials[0][k] for k in best} == best
    assert set(best) == {"num_leaves", "learning_rate", "min_data_in_leaf", "feature_fraction", "lambda_l2"}
    assert all(0.5 < t["value"] < 1 for t in trials)
