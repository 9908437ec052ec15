"""The endpoint's scoring path (`predict_records`, `explain_records`) agrees with offline scoring and
explanations, on the real flight model and on a real small multiclass model."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from ml_platform.core.model import FeatureEncoder, Model


def _records(frame: pd.DataFrame, names: list[str]) -> list[dict]:
    """JSON-like rows, as a request carries them: None for missing values."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame[names].to_dict("records")]


@pytest.fixture(scope="module")
def multiclass() -> tuple[Model, pd.DataFrame]:
    """A real 3-class LightGBM model on 400 synthetic rows (two numeric features, one categorical, some missing),
    and 120 other rows to score."""
    rng = np.random.default_rng(7)
    n = 520
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "speed": rng.uniform(0, 10, size=n),
            "shape": rng.choice(["round", "square", "flat"], size=n),
        }
    )
    frame.loc[rng.choice(n, 30, replace=False), "speed"] = np.nan
    frame.loc[rng.choice(n, 30, replace=False), "shape"] = None
    score = frame["size"] + 0.3 * frame["speed"].fillna(5) + (frame["shape"] == "round") * 1.5
    label = np.digitize(score + rng.normal(scale=0.4, size=n), np.quantile(score, [1 / 3, 2 / 3]))
    train, rows = frame.iloc[:400], frame.iloc[400:].reset_index(drop=True)
    encoder = FeatureEncoder.fit(train, ["size", "speed"], ["shape"])
    data = lgb.Dataset(encoder.transform(train), label[:400], feature_name=encoder.names, categorical_feature=[2])
    booster = lgb.train(
        {
            "objective": "multiclass",
            "num_class": 3,
            "num_leaves": 7,
            "min_data_in_leaf": 10,
            "verbose": -1,
            "seed": 0,
            "deterministic": True,
        },
        data,
        num_boost_round=30,
    )
    return Model(booster, encoder, {"task": "multiclass", "classes": [0, 1, 2]}), rows


def _assert_explanations_are_the_top_contributions(model: Model, rows: pd.DataFrame, top: int = 5) -> None:
    """Row by row: each explanation is the row's `contributions`, the largest in absolute value first."""
    names = model.encoder.names
    explanations = model.explain_records(_records(rows, names), top=top)
    contributions = model.contributions(rows).drop(columns="(bias)")
    assert len(explanations) == len(rows)
    for explained, (_, offline) in zip(explanations, contributions.iterrows(), strict=True):
        assert len(explained) == min(top, len(names)) == len({e["feature"] for e in explained})
        assert [e["contribution"] for e in explained] == [offline[e["feature"]] for e in explained]
        magnitudes = [abs(e["contribution"]) for e in explained]
        assert magnitudes == sorted(offline.abs(), reverse=True)[: len(explained)]


def test_records_score_exactly_like_frames(model, split):
    rows = split.test.head(300)
    records = _records(rows, model.encoder.names)
    assert np.array_equal(model.predict_records(records), model.predict(rows))


def test_explanations_of_records_are_the_offline_contributions(model, split):
    _assert_explanations_are_the_top_contributions(model, split.test.sample(100, random_state=3))
    assert model.explain_records([]) == []


def test_multiclass_records_score_exactly_like_frames(multiclass):
    model, rows = multiclass
    predictions = model.predict_records(_records(rows, model.encoder.names))
    assert predictions.shape == (len(rows), 3)
    assert np.array_equal(predictions, model.predict(rows))


def test_multiclass_explanations_explain_the_predicted_class_like_contributions(multiclass):
    model, rows = multiclass
    _assert_explanations_are_the_top_contributions(model, rows, top=3)
    # the contributions are those of each row's top class: they add up to that class's raw score
    matrix = model.encoder.transform(rows)
    raw = model.booster.predict(matrix, raw_score=True)
    top = model.predict(rows).argmax(axis=1)
    contributions = model.contributions(rows)
    assert np.allclose(contributions.sum(axis=1).to_numpy(), raw[np.arange(len(rows)), top], atol=1e-9)
    assert set(top) == {0, 1, 2}, "every class is predicted for some row"
    # ...which is not the first class's block that a plain slice of pred_contrib gives
    width = len(model.encoder.names) + 1
    first_block = model.booster.predict(matrix, pred_contrib=True)[:, :width]
    others = top != 0
    assert not np.allclose(first_block[others], contributions.to_numpy()[others])
