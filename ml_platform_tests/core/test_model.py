"""The model artifact and its scorer on a real trained model: native text + JSON, consistent scoring, TreeSHAP."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ml_platform.core.model import MANIFEST_FILE, MODEL_FILE, FeatureEncoder, Model


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    return model.save(tmp_path_factory.mktemp("model") / "flight_delay")


def test_save_and_load_predict_identically(model, saved, split):
    loaded = Model.load(saved)
    before, after = model.predict(split.test), loaded.predict(split.test)
    assert len(after) == len(split.test) >= 2000  # a batch large enough to use all threads
    assert np.max(np.abs(before - after)) == 0
    assert loaded.encoder == model.encoder
    assert loaded.task == "binary" and loaded.classes == [0, 1]
    assert loaded.booster.num_trees() == model.booster.num_trees()


def test_the_folder_is_native_text_and_json_without_pickles(saved, model):
    assert (
        sorted(p.name for p in saved.iterdir()) == sorted([MODEL_FILE, MANIFEST_FILE]) == ["manifest.json", "model.txt"]
    )
    assert (saved / MODEL_FILE).read_text().startswith("tree")
    manifest = json.loads((saved / MANIFEST_FILE).read_text())
    assert manifest["features"]["numeric"] == model.encoder.numeric
    assert manifest["features"]["categorical"] == ["carrier", "origin", "dest", "plane_manufacturer"]
    assert manifest["features"]["levels"]["origin"] == ["EWR", "JFK", "LGA"]
    for path in saved.iterdir():  # no pickle protocol header, no .pkl/.joblib files
        assert path.suffix not in (".pkl", ".pickle", ".joblib")
        assert not path.read_bytes().startswith(b"\x80")


def test_saving_does_not_change_the_in_memory_manifest(model, saved):
    assert "features" not in model.manifest
    assert Model.load(saved).manifest["spec_digest"] == model.manifest["spec_digest"]


def test_a_row_scores_the_same_alone_as_in_a_batch(model, split):
    batch = model.predict(split.test)  # >= 2000 rows: all threads
    for position in range(50):
        alone = model.predict(split.test.iloc[[position]])  # one row: one thread
        assert alone.shape == (1,) and alone[0] == batch[position]
    middle = model.predict(split.test.iloc[100:150])
    assert np.array_equal(middle, batch[100:150])


def test_scoring_does_not_depend_on_column_order_or_extra_columns(model, split):
    rows = split.test.head(200)
    reordered = rows[list(reversed(rows.columns))].assign(unrelated="x")
    assert np.array_equal(model.predict(reordered), model.predict(rows))


def test_an_unseen_category_scores_as_missing(model, split):
    rows = split.test.head(50)
    unseen = model.predict(rows.assign(carrier="ZZZ"))
    missing = model.predict(rows.assign(carrier=np.nan))
    assert np.isfinite(unseen).all() and np.array_equal(unseen, missing)
    alone = model.predict(rows.head(1).assign(carrier="ZZZ"))
    assert alone[0] == missing[0]


def test_missing_values_score_without_error_and_equal_nan(model, split):
    rows = split.test.head(50)
    for name, none_value in (("temp", None), ("plane_year", None), ("plane_manufacturer", None), ("dest", None)):
        as_none = model.predict(rows.assign(**{name: none_value}))
        as_nan = model.predict(rows.assign(**{name: np.nan}))
        assert np.isfinite(as_none).all() and np.array_equal(as_none, as_nan), name
    one_row = rows.head(1).assign(temp=np.nan, carrier=None)
    assert np.isfinite(model.predict(one_row)).all()


def test_a_numeric_feature_given_as_text_is_coerced(model, split):
    rows = split.test.head(20)
    as_text = rows.assign(distance=rows["distance"].astype(str))
    assert np.array_equal(model.predict(as_text), model.predict(rows))
    garbage = rows.assign(temp="not a number")
    assert np.array_equal(model.predict(garbage), model.predict(rows.assign(temp=np.nan)))


def _as_text(model: Model, frame: pd.DataFrame) -> pd.DataFrame:
    """The frame with its categorical features as object text (missing stays NaN), as features were before
    they became pandas Categoricals."""
    return frame.astype(dict.fromkeys(model.encoder.categorical, object))


def test_features_reach_the_scorer_as_categoricals(model, split):
    assert all(isinstance(split.test[name].dtype, pd.CategoricalDtype) for name in model.encoder.categorical)


@pytest.mark.parametrize("dtype", ["category", "string"])
def test_categorical_features_in_pandas_dtypes_score_the_same(model, split, dtype):
    rows = _as_text(model, split.test.head(200))
    rows.loc[rows.index[:3], "carrier"] = "ZZZ"  # unseen levels stay missing whatever the dtype
    expected = model.predict(rows)
    typed = rows.astype(dict.fromkeys(model.encoder.categorical, dtype))
    assert np.array_equal(model.predict(typed), expected)
    assert model.encoder.unseen(typed)["carrier"] == model.encoder.unseen(rows)["carrier"] >= 3


def test_the_encoder_counts_unseen_values(model, split):
    rows = _as_text(model, split.test.head(40))
    before = model.encoder.unseen(rows)
    assert set(before) == set(model.encoder.categorical)
    rows.loc[rows.index[:3], "carrier"] = "ZZZ"
    rows.loc[rows.index[3:5], "carrier"] = np.nan  # missing is not unseen
    rows.loc[rows.index[:7], "origin"] = "XYZ"
    after = model.encoder.unseen(rows)
    assert after["carrier"] == 3 + _unseen_among(model.encoder, rows["carrier"].iloc[5:])
    assert after["origin"] == 7 and before["origin"] == 0
    assert after["dest"] == before["dest"] and after["plane_manufacturer"] == before["plane_manufacturer"]


def _unseen_among(encoder: FeatureEncoder, values: pd.Series) -> int:
    return int((~values.dropna().astype(str).isin(encoder.levels["carrier"])).sum())


def test_categorical_and_object_features_score_identically(model, split):
    """Every row of the held-out days, categorical features as Categoricals (any level set or order) or as object
    text: the same numbers, bit for bit, as the booster on the row-major matrix."""
    expected = model.booster.predict(model.encoder.transform(_as_text(model, split.test)))
    assert np.array_equal(model.predict(_as_text(model, split.test)), expected)
    assert np.array_equal(model.predict(split.test), expected)
    shuffled = split.test.copy()
    for name in model.encoder.categorical:  # levels in another order, with extra ones and without training ones
        observed = list(split.test[name].cat.categories)
        shuffled[name] = split.test[name].cat.set_categories([*reversed(observed), "never seen", "x"])
    assert not shuffled["carrier"].cat.categories.equals(split.test["carrier"].cat.categories)
    assert np.array_equal(model.predict(shuffled), expected)
    few = split.test.head(50)  # under the batch threshold: one thread
    assert np.array_equal(model.predict(few), expected[:50])
    assert np.array_equal(model.predict(_as_text(model, few)), expected[:50])


def test_the_scoring_matrix_is_column_major_with_the_same_values(model, split):
    rows = split.test.head(300)
    by_row, by_column = model.encoder.transform(rows), model.encoder.transform(rows, order="F")
    assert by_row.flags["C_CONTIGUOUS"] and by_column.flags["F_CONTIGUOUS"]
    np.testing.assert_array_equal(by_row, by_column)
    np.testing.assert_array_equal(by_row, model.encoder.transform(_as_text(model, rows)))
    assert np.isnan(by_row).any()  # missing values (plane data) travel as NaN in both layouts


def test_the_encoder_learns_the_same_levels_from_categoricals_and_text(model, split):
    numeric, categorical = model.encoder.numeric, model.encoder.categorical
    padded = split.train.copy()
    padded["carrier"] = padded["carrier"].cat.add_categories(["unused level"])  # a level with no row
    from_categoricals = FeatureEncoder.fit(padded, numeric, categorical)
    from_text = FeatureEncoder.fit(_as_text(model, split.train), numeric, categorical)
    assert from_categoricals == from_text
    assert "unused level" not in from_categoricals.levels["carrier"]
    assert from_text.levels["carrier"] == sorted(set(_as_text(model, split.train)["carrier"].dropna()))


def test_the_encoder_learns_sorted_levels_from_training_rows_only(model, split):
    levels = model.encoder.levels
    seen = pd.concat([getattr(split, part) for part in model.manifest["fit"]["splits"]])  # train (+ valid: refit)
    assert levels["carrier"] == sorted(set(seen["carrier"].dropna()))
    assert all(level == level and level != "nan" for values in levels.values() for level in values)


def test_records_encode_like_frames(model, split):
    rows = split.test.head(200)
    records = [
        {k: (None if pd.isna(v) else v) for k, v in record.items()}
        for record in rows[model.encoder.names].to_dict("records")
    ]
    records[0]["carrier"] = "ZZZ"
    frame = _as_text(model, rows)
    frame.loc[frame.index[0], "carrier"] = "ZZZ"
    np.testing.assert_array_equal(model.encoder.transform_records(records), model.encoder.transform(frame))


def test_contributions_sum_to_the_raw_margin(model, split):
    rows = split.test.sample(200, random_state=1)
    contributions = model.contributions(rows)
    assert list(contributions.columns) == [*model.encoder.names, "(bias)"]
    assert contributions.index.equals(rows.index)
    margin = model.booster.predict(model.encoder.transform(rows), raw_score=True)
    assert np.max(np.abs(contributions.sum(axis=1).to_numpy() - margin)) < 1e-6
    probability = 1 / (1 + np.exp(-contributions.sum(axis=1).to_numpy()))
    assert np.allclose(probability, model.predict(rows), atol=1e-9)


def test_a_missing_feature_column_raises_key_error_naming_it(model, split):
    rows = split.test.head(5)
    with pytest.raises(KeyError, match="carrier"):
        model.predict(rows.drop(columns=["carrier"]))
    with pytest.raises(KeyError, match="temp, plane_year"):
        model.predict(rows.drop(columns=["temp", "plane_year"]))


def test_no_rows_score_and_explain_to_empty_results(model, split):
    empty = split.test.iloc[0:0]
    assert model.predict(empty).shape == (0,)
    contributions = model.contributions(empty)
    assert contributions.empty and list(contributions.columns) == [*model.encoder.names, "(bias)"]


def test_training_on_categoricals_or_text_gives_the_same_model_file(model, split, spec):
    """The features' dtype is not part of the model: the same rows as object text train a byte-identical
    booster with the same levels."""
    from ml_platform.core.training import Split, train

    text = Split(*(_as_text(model, getattr(split, part)) for part in ("train", "valid", "test")))
    again = train(spec, text).model
    assert again.encoder == model.encoder
    assert again.booster.model_to_string() == model.booster.model_to_string()
