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
from ml_platform_tests.core.text_classifier import with_target


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
    assert _days(split.valid) == all_days[-(test_days + valid_days) : -test_days]
    assert _days(split.train) == all_days[: -(test_days + valid_days)]
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
    days = _days(features)[: needed - 1]
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


# --- refit: the final model trains on train + validation with the rounds early stopping chose ------------------


@pytest.fixture(scope="module")
def not_refitted(spec, split):
    return train(_with_training(spec, refit=False), split)


def _params(result) -> dict:
    """The LightGBM parameters a result was trained with (without what the platform adds for MLflow)."""
    return result.model.manifest["params"]


def _model_file(model, folder) -> bytes:
    return (model.save(folder) / "model.txt").read_bytes()


def test_refit_is_on_by_default_and_documented(spec):
    assert spec.training.refit is True
    assert "validation" in ModelSpec.model_fields["training"].annotation.model_fields["refit"].description


def test_refit_trains_best_iteration_rounds_on_train_and_valid_rows(spec, split, trained, tmp_path):
    fit_rows = pd.concat([split.train, split.valid], ignore_index=True)
    booster = trained.model.booster
    assert booster.num_trees() == trained.best_iteration == trained.model.manifest["best_iteration"] >= 1
    assert trained.model.manifest["fit"] == {
        "refit": True,
        "splits": ["train", "valid"],
        "rows": len(fit_rows),
        "first_day": str(split.train["scheduled_departure"].min().date()),
        "last_day": str(split.valid["scheduled_departure"].max().date()),
        "rounds": trained.best_iteration,
        "rounds_chosen_by": f"early stopping on the validation days ({len(split.valid)} rows)",
        "valid_metrics_from": "the early-stopping model, trained on the training days only (the final model has "
        "seen the validation days)",
    }
    assert trained.model.manifest["fit"]["last_day"] < str(split.test["scheduled_departure"].min().date())
    assert trained.params["refit"] is True and trained.params["fit_rows"] == len(fit_rows)
    assert trained.params["fit_rounds"] == trained.best_iteration
    assert trained.params["fit_window"] == "2013-05-01 → 2013-06-18"
    # The same booster as LightGBM's own API fitted on those rows for that many rounds, byte for byte.
    encoder = trained.model.encoder
    assert encoder.levels == {
        name: sorted(fit_rows[name].dropna().astype(str).unique()) for name in spec.features.all_categorical
    }
    reference = lgb.train(
        _params(trained),
        lgb.Dataset(
            encoder.transform(fit_rows),
            fit_rows["delayed"].to_numpy(dtype=np.float64),
            feature_name=encoder.names,
            categorical_feature=list(range(len(encoder.numeric), len(encoder.names))),
        ),
        num_boost_round=trained.best_iteration,
    )
    assert booster.model_to_string() == reference.model_to_string()


def test_without_refit_the_model_is_the_early_stopping_model_as_before(spec, split, not_refitted, tmp_path):
    """refit: false is exactly the platform before refit: LightGBM early-stopped on the training rows."""
    encoder = not_refitted.model.encoder
    categorical = list(range(len(encoder.numeric), len(encoder.names)))
    train_set = lgb.Dataset(
        encoder.transform(split.train),
        split.train["delayed"].to_numpy(dtype=np.float64),
        feature_name=encoder.names,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    valid_set = lgb.Dataset(
        encoder.transform(split.valid),
        split.valid["delayed"].to_numpy(dtype=np.float64),
        reference=train_set,
        categorical_feature=categorical,
        free_raw_data=False,
    )
    reference = lgb.train(
        _params(not_refitted),
        train_set,
        num_boost_round=spec.training.num_boost_round,
        valid_sets=[train_set, valid_set],
        valid_names=["train", "valid"],
        callbacks=[lgb.early_stopping(spec.training.early_stopping_rounds, first_metric_only=True, verbose=False)],
    )
    assert reference.best_iteration == not_refitted.best_iteration
    reference_file = tmp_path / "reference.txt"
    reference.save_model(str(reference_file))
    assert _model_file(not_refitted.model, tmp_path / "platform") == reference_file.read_bytes()
    assert encoder.levels == {
        name: sorted(split.train[name].dropna().astype(str).unique()) for name in spec.features.all_categorical
    }
    fit = not_refitted.model.manifest["fit"]
    assert fit["refit"] is False and fit["rows"] == len(split.train) and fit["splits"] == ["train"]
    assert fit["last_day"] == str(split.train["scheduled_departure"].max().date())
    assert not_refitted.params["refit"] is False and not_refitted.params["fit_rows"] == len(split.train)


def test_refit_keeps_the_early_stopping_curve_rounds_and_validation_metrics(trained, not_refitted, split):
    """What early stopping saw does not change with refit; the validation metrics come from the early-stopping
    model, since the refitted one has seen the validation rows."""
    assert trained.learning_curve == not_refitted.learning_curve
    assert trained.best_iteration == not_refitted.best_iteration
    assert trained.model.manifest["metrics"] == not_refitted.model.manifest["metrics"]
    assert dict(_params(trained).items()) == _params(not_refitted)
    refitted_valid = ev.score(trained.model, split.valid, "roc_auc")
    assert refitted_valid != trained.model.manifest["metrics"]["valid_roc_auc"]


def test_refit_and_no_refit_are_judged_on_the_same_untouched_test_rows(spec, split, trained, not_refitted):
    """The split, hence the test rows, does not depend on refit; neither model trained on them."""
    other = split_by_time(
        pd.concat([split.train, split.valid, split.test], ignore_index=True), _with_training(spec, refit=False)
    )
    pd.testing.assert_frame_equal(other.test, split.test)
    test_first_day = str(split.test["scheduled_departure"].min().date())
    for result in (trained, not_refitted):
        assert result.model.manifest["fit"]["last_day"] < test_first_day
        assert result.model.manifest["rows"]["test"] == len(split.test)
    refitted, stopped = (ev.score(r.model, split.test, "roc_auc") for r in (trained, not_refitted))
    assert 0.6 < refitted < 1 and 0.6 < stopped < 1 and refitted != stopped


def test_refit_learns_categorical_levels_first_seen_in_the_validation_days(spec, split):
    new_level = split.valid.assign(carrier=np.where(np.arange(len(split.valid)) % 5 == 0, "ZZ", split.valid["carrier"]))
    shifted = Split(split.train, new_level, split.test)
    assert "ZZ" in train(spec, shifted).model.encoder.levels["carrier"]
    assert "ZZ" not in train(_with_training(spec, refit=False), shifted).model.encoder.levels["carrier"]


def test_tuning_judges_trials_on_validation_rows_they_did_not_train_on(spec, split):
    """Trials never refit: a refitted trial would be scored on its own training rows."""

    def trials(refit: bool) -> list[dict]:
        tuned = _with_training(spec, refit=refit, tuning=spec.training.tuning.model_copy(update={"trials": 1}))
        return tune(tuned, split, lambda model, frame: ev.score(model, frame, "roc_auc"))[1]

    on, off = trials(True), trials(False)
    assert on == off and 0.5 < on[0]["value"] < 1


def test_a_column_target_is_named_after_its_column_in_the_manifest(tmp_path):
    """`target: {column: price}` trains, and the manifest (which the endpoint's model description reads) says
    price, not `target`."""
    import yaml

    from ml_platform.core.features import build_features
    from ml_platform.spec import load_spec

    rng = np.random.default_rng(0)
    stamps = pd.Timestamp("2024-01-01") + pd.to_timedelta(np.sort(rng.integers(0, 14 * 24, 1400)), unit="h")
    size = rng.uniform(20, 200, len(stamps))
    city = rng.choice(["a", "b", "c"], len(stamps))
    raw = pd.DataFrame(
        {
            "ts": stamps,
            "size": size,
            "city": city,
            "price": 3 * size + np.where(city == "a", 100, 0) + rng.normal(0, 5, len(stamps)),
        }
    )
    spec_file = tmp_path / "prices.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "name": "prices",
                "description": "d",
                "owner": "team:pricing",
                "task": "regression",
                "timestamp": "ts",
                "source": {"kind": "files", "path": str(tmp_path / "prices.csv")},
                "partitions": {"start": "2024-01-01"},
                "target": {"column": "price"},
                "features": {"numeric": ["size"], "categorical": ["city"]},
                "training": {
                    "window_days": 14,
                    "validation_days": 2,
                    "test_days": 2,
                    "num_boost_round": 50,
                    "early_stopping_rounds": 5,
                },
            }
        )
    )
    spec = load_spec(spec_file)
    assert spec.target.name == "price"
    features, _ = build_features(raw, spec)
    assert "price" in features.columns and "target" not in features.columns
    result = train(spec, split_by_time(features, spec))
    assert result.model.manifest["target"] == "price"
    assert ev.score(result.model, split_by_time(features, spec).test, "rmse") < 50


def test_the_early_stopping_replay_stops_where_lightgbm_stops(spec, split):
    """The Dask engine chooses its rounds by replaying LightGBM's early-stopping rule on recorded curves."""
    from ml_platform.core.training import early_stopping_round

    never = spec.model_copy(
        update={
            "training": spec.training.model_copy(
                update={"early_stopping_rounds": 10**6, "refit": False, "num_boost_round": 150}
            )
        }
    )
    curve = train(never, split).learning_curve["valid"]
    assert list(curve) == ["binary_logloss", "auc"] and len(curve["auc"]) == 150
    for patience in (3, 10, 30):
        stopping = spec.model_copy(
            update={
                "training": spec.training.model_copy(
                    update={"early_stopping_rounds": patience, "refit": False, "num_boost_round": 150}
                )
            }
        )
        assert early_stopping_round(curve, patience) == train(stopping, split).best_iteration


def _as_airports(split: Split) -> Split:
    return Split(*(part.assign(airport=part["origin"].astype(str)) for part in (split.train, split.valid, split.test)))


def test_a_multiclass_model_on_text_labels_keeps_them_in_its_manifest(spec, split):
    airports = with_target(spec, "multiclass", name="airport", column="origin")
    model = train(airports, _as_airports(split)).model
    assert model.manifest["classes"] == ["EWR", "JFK", "LGA"] and "positive" not in model.manifest
    scores = model.predict(split.test)
    assert scores.shape == (len(split.test), 3)
    predicted = model.predict_labels(split.test)
    assert set(predicted) <= {"EWR", "JFK", "LGA"} and predicted == [
        ("EWR", "JFK", "LGA")[i] for i in scores.argmax(axis=1)
    ]
    y = ev.encoded_target(model, _as_airports(split).test)
    assert ev.task_metrics("multiclass", y, scores)["macro_f1"] > 0.5  # weather and routes tell airports apart
    declared = with_target(spec, "multiclass", name="airport", column="origin", classes=["LGA", "JFK", "EWR"])
    assert train(declared, _as_airports(split)).model.manifest["classes"] == ["LGA", "JFK", "EWR"]


def test_a_binary_model_on_text_labels_answers_the_positive_class(spec, split):
    text = Split(
        *(
            part.assign(outcome=np.where(part["delayed"] == 1, "yes", "no"))
            for part in (split.train, split.valid, split.test)
        )
    )
    yes = train(with_target(spec, "binary", name="outcome", column="outcome", positive="yes"), text).model
    assert yes.manifest["classes"] == ["no", "yes"] and yes.manifest["positive"] == "yes"
    # the same codes as the 0/1 target: the same model, scores and all
    numeric = train(with_target(spec, "binary", name="delayed", expression="arr_delay > 15"), split).model
    assert np.array_equal(yes.predict(split.test), numeric.predict(split.test))
    no = train(with_target(spec, "binary", name="outcome", column="outcome", positive="no"), text).model
    assert no.manifest["classes"] == ["yes", "no"] and no.labels.positive == "no"
    assert ev.task_metrics("binary", ev.encoded_target(no, text.test), no.predict(text.test))["roc_auc"] > 0.6


def test_a_class_first_seen_in_the_validation_days_is_left_out_and_counted(spec, split):
    airports = _as_airports(split)
    valid = airports.valid.copy()
    valid.loc[valid.index[:7], "airport"] = "ISP"
    shifted = Split(airports.train, valid, airports.test)
    spec_ = with_target(spec, "multiclass", name="airport", column="origin")
    unrefitted = spec_.model_copy(update={"training": spec_.training.model_copy(update={"refit": False})})
    model = train(unrefitted, shifted).model
    assert model.manifest["classes"] == ["EWR", "JFK", "LGA"]
    assert model.manifest["labels_unseen"] == {"train": 0, "valid": 7}
    assert model.manifest["rows"]["valid"] == len(valid) - 7
    refitted = spec_.model_copy(update={"training": spec_.training.model_copy(update={"refit": True})})
    assert train(refitted, shifted).model.manifest["classes"] == ["EWR", "ISP", "JFK", "LGA"]


def test_a_declared_positive_class_missing_from_the_window_names_target_positive(spec, split):
    text = Split(
        *(
            part.assign(outcome=np.where(part["delayed"] == 1, "yes", "no"))
            for part in (split.train, split.valid, split.test)
        )
    )
    with pytest.raises(TrainingError, match=r": target\.positive: 'late' is not a value of 'outcome'"):
        train(with_target(spec, "binary", name="outcome", column="outcome", positive="late"), text)
