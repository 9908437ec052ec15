"""Evaluation: task metrics against scikit-learn, a naive baseline, slices, fairness, sanity, a real model, and a
classifier on text labels (confusion matrix, held-out labels never seen in training)."""

from __future__ import annotations

import base64

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from ml_platform.core import evaluation as ev
from ml_platform.core import evaluation_plots
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform_tests.core.text_classifier import CLASSES, TARGET, text_multiclass

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def evaluation(model, split) -> ev.Evaluation:
    return ev.evaluate(model, split.train, split.test, "roc_auc", ["origin", "carrier"], "origin")


# --- metrics on hand-made data ----------------------------------------------------------------------------


def test_binary_metrics_equal_scikit_learn():
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.6, 0.55])
    got = ev.task_metrics("binary", y, p)
    expected = {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "brier": skm.brier_score_loss(y, p),
        "accuracy": skm.accuracy_score(y, p >= 0.5),
    }
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name
    assert got["roc_auc"] == pytest.approx(0.8125) and got["accuracy"] == pytest.approx(0.75)
    assert all(type(v) is float for v in got.values())


def test_binary_metrics_clip_certain_predictions():
    got = ev.task_metrics("binary", np.array([0, 1, 1]), np.array([0.0, 1.0, 0.0]))
    assert np.isfinite(got["log_loss"]) and got["log_loss"] > 5


def test_binary_metrics_leave_out_what_one_class_cannot_define():
    got = ev.task_metrics("binary", np.array([1, 1, 1]), np.array([0.2, 0.7, 0.9]))
    assert set(got) == {"brier", "accuracy"}
    assert got["accuracy"] == pytest.approx(2 / 3)


def test_regression_metrics_equal_scikit_learn():
    y, p = np.array([3.0, -1.0, 2.5, 7.0]), np.array([2.5, 0.0, 2.0, 8.0])
    got = ev.task_metrics("regression", y, p)
    assert got["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert got["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert got["r2"] == pytest.approx(skm.r2_score(y, p))


def test_multiclass_metrics_equal_scikit_learn():
    y = np.array([0, 1, 2, 2, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.3, 0.4, 0.3], [0.5, 0.4, 0.1]])
    got = ev.task_metrics("multiclass", y, p)
    assert got["macro_f1"] == pytest.approx(skm.f1_score(y, p.argmax(axis=1), average="macro"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y, p))
    assert got["accuracy"] == pytest.approx(0.6)


def test_baseline_predicts_the_training_prior():
    y_train, y_test = np.array([0, 0, 0, 1]), np.array([0, 1, 0, 1, 1])
    base = ev.baseline_metrics("binary", y_train, y_test)
    assert base["roc_auc"] == 0.5
    assert base["brier"] == pytest.approx(skm.brier_score_loss(y_test, np.full(5, 0.25)))
    assert base["accuracy"] == pytest.approx(0.4)  # the prior 0.25 predicts "not delayed" everywhere
    regression = ev.baseline_metrics("regression", np.array([1.0, 3.0]), np.array([2.0, 4.0]))
    assert regression["rmse"] == pytest.approx(np.sqrt(2))
    multiclass = ev.baseline_metrics("multiclass", np.array([0, 1, 1, 2]), np.array([1, 2, 0]), n_classes=3)
    assert multiclass["accuracy"] == pytest.approx(1 / 3)


# --- slices, fairness, sanity -----------------------------------------------------------------------------


def test_slices_skip_levels_with_fewer_than_30_rows(model, split):
    rows = split.test.head(29 + 30 + 41).copy()
    rows["origin"] = ["AAA"] * 29 + ["BBB"] * 30 + ["CCC"] * 41
    predictions = model.predict(rows)
    table = ev.slice_metrics(model, rows, predictions, ["origin"], "brier")
    assert ev.MIN_SLICE_ROWS == 30
    assert list(table.columns) == ["column", "level", "rows", "brier"]
    assert table["level"].tolist() == ["BBB", "CCC"] and table["rows"].tolist() == [30, 41]
    bbb = slice(29, 59)
    expected = skm.brier_score_loss(rows["delayed"].iloc[bbb], predictions[bbb])
    assert table.loc[table["level"] == "BBB", "brier"].item() == pytest.approx(expected)


def test_slices_leave_out_levels_where_the_metric_is_undefined(model, split):
    rows = split.test.head(300).copy()
    delayed = rows["delayed"].to_numpy() == 1
    rows["origin"] = np.where(delayed, "ALL_DELAYED", "MIXED")
    rows.loc[rows.index[delayed][:3], "origin"] = "MIXED"  # both classes here, one class in ALL_DELAYED
    assert (rows["origin"] == "ALL_DELAYED").sum() >= ev.MIN_SLICE_ROWS
    table = ev.slice_metrics(model, rows, model.predict(rows), ["origin"], "roc_auc")
    assert table["level"].tolist() == ["MIXED"]


def test_fairness_gap_names_best_and_worst_levels():
    slices = pd.DataFrame(
        [
            {"column": "origin", "level": "EWR", "rows": 100, "roc_auc": 0.70},
            {"column": "origin", "level": "JFK", "rows": 100, "roc_auc": 0.75},
            {"column": "origin", "level": "LGA", "rows": 100, "roc_auc": 0.66},
            {"column": "carrier", "level": "AA", "rows": 100, "roc_auc": 0.95},
            {"column": "carrier", "level": "UA", "rows": 100, "roc_auc": 0.40},
        ]
    )
    gap = ev.fairness_gap(slices, "origin", "roc_auc")
    assert gap == {
        "group": "origin",
        "metric": "roc_auc",
        "gap": pytest.approx(0.09),
        "best": "JFK",
        "worst": "LGA",
        "levels": 3,
    }
    assert ev.fairness_gap(slices[slices["level"] != "LGA"], "origin", "roc_auc")["gap"] == pytest.approx(0.05)
    assert ev.fairness_gap(slices[slices["level"] == "EWR"], "origin", "roc_auc") is None
    assert ev.fairness_gap(slices, "dest", "roc_auc") is None


def test_sanity_flags_constant_non_finite_and_out_of_range_predictions():
    good = ev.sanity("binary", np.array([0.1, 0.5, 0.9]))
    assert good["passed"] and good["finite"] and good["in_range"] and not good["constant"]
    constant = ev.sanity("binary", np.full(10, 0.3))
    assert constant["constant"] and not constant["passed"] and constant["finite"]
    for values in ([0.1, np.nan], [0.1, np.inf], [0.2, -np.inf]):
        flagged = ev.sanity("binary", np.array(values))
        assert not flagged["finite"] and not flagged["passed"], values
    for values in ([0.1, 1.5], [-0.1, 0.5]):
        flagged = ev.sanity("binary", np.array(values))
        assert not flagged["in_range"] and not flagged["passed"], values
    assert ev.sanity("regression", np.array([-40.0, 3.0, 900.0]))["passed"]
    assert not ev.sanity("regression", np.array([5.0, 5.0]))["passed"]
    assert ev.sanity("multiclass", np.array([[0.2, 0.8], [0.6, 0.4]]))["passed"]


def test_score_is_oriented_so_larger_is_better(model, split):
    rows = split.test  # held out (with refit the final model has seen the validation days)
    expected = ev.task_metrics(model.task, ev.encoded_target(model, rows), model.predict(rows), model.classes)
    assert ev.score(model, rows, "roc_auc") == expected["roc_auc"] > 0.5
    assert ev.score(model, rows, "log_loss") == -expected["log_loss"] < 0


# --- the real model -----------------------------------------------------------------------------------------


def test_evaluate_a_real_model(evaluation, model, split, spec):
    assert evaluation.metric == "roc_auc" and evaluation.value == evaluation.metrics["roc_auc"] > 0.6
    assert evaluation.metrics["roc_auc"] > evaluation.baseline["roc_auc"] == 0.5
    assert evaluation.metrics["brier"] < evaluation.baseline["brier"]
    assert evaluation.champion is None
    assert np.array_equal(evaluation.predictions, model.predict(split.test))
    assert evaluation.sanity["passed"]


def test_real_slices_and_fairness(evaluation, split):
    table = evaluation.slices
    assert set(table["column"]) == {"origin", "carrier"} and (table["rows"] >= ev.MIN_SLICE_ROWS).all()
    assert set(table.loc[table["column"] == "origin", "level"]) == {"EWR", "JFK", "LGA"}
    counts = split.test["origin"].value_counts()
    for _, row in table[table["column"] == "origin"].iterrows():
        assert row["rows"] == counts[row["level"]]
    origin = table[table["column"] == "origin"].set_index("level")["roc_auc"]
    fairness = evaluation.fairness
    assert fairness["group"] == "origin" and fairness["levels"] == 3
    assert fairness["best"] == origin.idxmax() and fairness["worst"] == origin.idxmin()
    assert fairness["gap"] == pytest.approx(origin.max() - origin.min()) and fairness["gap"] > 0


def test_attributions_cover_every_feature_sorted_descending(evaluation, spec):
    attributions = evaluation.attributions
    assert sorted(attributions.index) == sorted(spec.features.names)
    assert attributions.is_monotonic_decreasing and (attributions >= 0).all() and attributions.iloc[0] > 0


def test_plots_are_base64_png(evaluation):
    assert set(evaluation.plots) == {"feature_attributions", "curves", "confusion_matrix"}
    for name, text in evaluation.plots.items():
        assert isinstance(text, str), name
        data = base64.b64decode(text, validate=True)
        assert data.startswith(PNG_MAGIC) and len(data) > 1000, name


def test_evaluate_against_a_champion_and_without_plots(model, split):
    result = ev.evaluate(model, split.train, split.test, "roc_auc", [], None, champion=model, plots=False)
    assert result.champion == result.metrics
    assert result.plots == {} and result.fairness is None and result.slices.empty


# --- categorical features as pandas Categoricals or as text: the same numbers -------------------------------


def _as_text(model, frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype(dict.fromkeys(model.encoder.categorical, object))


def test_slices_and_fairness_are_the_same_for_categoricals_and_text(model, split):
    """Group-bys over Categoricals must not grow empty groups (levels with no row) or turn missing into
    something else: the slice table and the fairness gap equal those of the same values as text."""
    rows = split.test.copy()
    rows["plane_manufacturer"] = rows["plane_manufacturer"].cat.add_categories(["NO SUCH MAKER"])
    assert rows["plane_manufacturer"].isna().sum() >= ev.MIN_SLICE_ROWS  # missing is a slice of its own
    predictions = model.predict(rows)
    columns = ["origin", "carrier", "plane_manufacturer"]
    as_categories = ev.slice_metrics(model, rows, predictions, columns, "roc_auc")
    as_text = ev.slice_metrics(model, _as_text(model, rows), predictions, columns, "roc_auc")
    pd.testing.assert_frame_equal(as_categories, as_text, check_exact=True)
    assert "NO SUCH MAKER" not in set(as_categories["level"])
    assert "nan" in set(as_categories.loc[as_categories["column"] == "plane_manufacturer", "level"])
    assert ev.fairness_gap(as_categories, "origin", "roc_auc") == ev.fairness_gap(as_text, "origin", "roc_auc")


def test_evaluate_gives_the_same_numbers_for_categoricals_and_text(model, split):
    categorical = ev.evaluate(model, split.train, split.test, "roc_auc", ["origin", "carrier"], "origin", plots=False)
    text = ev.evaluate(
        model,
        _as_text(model, split.train),
        _as_text(model, split.test),
        "roc_auc",
        ["origin", "carrier"],
        "origin",
        plots=False,
    )
    assert np.array_equal(categorical.predictions, text.predictions)
    assert categorical.metrics == text.metrics and categorical.baseline == text.baseline
    pd.testing.assert_frame_equal(categorical.slices, text.slices, check_exact=True)
    assert categorical.fairness == text.fairness and categorical.fairness["levels"] == 3
    pd.testing.assert_series_equal(categorical.attributions, text.attributions, check_exact=True)
    assert categorical.sanity == text.sanity


# --- confusion matrix, and held-out labels a classifier never saw ------------------------------------------


def _png_size(text: str) -> tuple[int, int]:
    data = base64.b64decode(text, validate=True)
    assert data.startswith(PNG_MAGIC)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.fixture(scope="module")
def text_labels():
    """A text-label multiclass model, its rows, and its evaluation on held-out rows with unseen and missing
    labels."""
    model, train, test = text_multiclass()
    test["group"] = np.where(np.arange(len(test)) % 2, "odd", "even")
    return model, train, test, ev.evaluate(model, train, test, "macro_f1", ["group"], "group", champion=model)


def test_a_binary_confusion_matrix_counts_predictions_at_one_half(evaluation, model, split):
    y = split.test["delayed"].to_numpy()
    expected = skm.confusion_matrix(y, model.predict(split.test) >= 0.5, labels=[0, 1])
    assert np.array_equal(evaluation.confusion.to_numpy(), expected)
    assert list(evaluation.confusion.index) == list(evaluation.confusion.columns) == ["0", "1"]
    assert evaluation.confusion.index.name == "actual" and evaluation.unseen_labels == {}
    accuracy = np.trace(expected) / expected.sum()
    assert evaluation.metrics["accuracy"] == pytest.approx(accuracy)


def test_a_multiclass_confusion_matrix_equals_scikit_learn_on_the_class_names(text_labels):
    model, _, test, result = text_labels
    known = test[test[TARGET].isin(CLASSES)]
    predicted = np.array(CLASSES, dtype=object)[model.predict(known).argmax(axis=1)]
    expected = skm.confusion_matrix(known[TARGET].to_numpy(), predicted, labels=CLASSES)
    assert list(result.confusion.index) == list(result.confusion.columns) == CLASSES
    assert np.array_equal(result.confusion.to_numpy(), expected)
    assert result.confusion.to_numpy().sum() == len(test) - 10
    assert result.metrics["accuracy"] == pytest.approx(np.trace(expected) / expected.sum())


def test_held_out_labels_never_seen_in_training_are_counted_and_left_out(text_labels):
    model, train, test, result = text_labels
    assert result.unseen_labels == {"huge": 7, "(missing)": 3}
    known = test[test[TARGET].isin(CLASSES)].reset_index(drop=True)
    clean = ev.evaluate(model, train, known, "macro_f1", ["group"], "group", plots=False)
    assert result.metrics == clean.metrics and result.baseline == clean.baseline
    assert np.isfinite(result.metrics["log_loss"]) and result.metrics["macro_f1"] > result.baseline["macro_f1"]
    pd.testing.assert_frame_equal(result.slices, clean.slices)
    assert result.slices["rows"].sum() == len(test) - 10 and result.fairness == clean.fairness
    assert result.champion == result.metrics  # the champion is judged on the same rows
    assert len(result.predictions) == len(test) and result.sanity["passed"]
    assert clean.unseen_labels == {}
    assert ev.score(model, test, "accuracy") == pytest.approx(clean.metrics["accuracy"])


def test_the_baseline_leaves_out_unknown_labels():
    with_unknown = ev.baseline_metrics("multiclass", np.array([0, 1, 1, 2, -1]), np.array([1, -1, 2, 0]), 3)
    assert with_unknown == ev.baseline_metrics("multiclass", np.array([0, 1, 1, 2]), np.array([1, 2, 0]), 3)
    binary = ev.baseline_metrics("binary", np.array([0, 0, 1, -1]), np.array([0, 1, -1]))
    assert binary == ev.baseline_metrics("binary", np.array([0, 0, 1]), np.array([0, 1]))
    regression = ev.baseline_metrics("regression", np.array([-1.0, 3.0]), np.array([-1.0, 1.0]))
    assert regression["rmse"] == pytest.approx(np.sqrt(2))  # -1 is a value, not a missing label


def test_a_multiclass_model_draws_its_confusion_matrix(text_labels):
    assert set(text_labels[3].plots) == {"feature_attributions", "confusion_matrix"}
    width, height = _png_size(text_labels[3].plots["confusion_matrix"])
    assert width > 100 and height > 100


def test_the_confusion_plot_draws_the_most_frequent_classes_only():
    names = [f"class_{i:02d}" for i in range(25)]
    counts = np.diag(np.arange(1, 26))
    counts[0, 1] = 100  # class_00 is frequent through its errors
    table = pd.DataFrame(counts, index=pd.Index(names, name="actual"), columns=pd.Index(names, name="predicted"))
    drawn = evaluation_plots._most_frequent(table, evaluation_plots.CONFUSION_CLASSES)
    assert list(drawn.index) == list(drawn.columns) == [names[0], *names[6:]]
    assert _png_size(evaluation_plots.confusion_plot(table))[0] > 100


def test_a_regression_has_no_confusion_matrix_and_keeps_every_row():
    _, train, test = text_multiclass(unseen=0, missing=0)
    for rows in (train, test):
        rows["value"] = rows["speed"].round() - 1  # -1 is a value here, not an unknown label
    assert (test["value"] == -1).sum() > 0
    encoder = FeatureEncoder.fit(train, ["size"], [])
    booster = lgb.train(
        {"objective": "regression", "verbose": -1, "seed": 0, "num_leaves": 7},
        lgb.Dataset(encoder.transform(train), train["value"], feature_name=encoder.names),
        num_boost_round=10,
    )
    model = Model(booster, encoder, {"task": "regression", "target": "value"})
    result = ev.evaluate(model, train, test, "rmse", [], None)
    assert result.confusion is None and result.unseen_labels == {}
    assert set(result.plots) == {"feature_attributions", "residuals"}
    assert result.metrics == ev.task_metrics("regression", test["value"].to_numpy(), model.predict(test))
