"""Real small LightGBM classifiers on text labels for the tests: a synthetic one for the evaluation and model-card
tests (three classes in a declared, not sorted, order, and held-out rows that also carry a label it never saw
and no label at all), a model of a flight's origin airport, and the flight spec with another task and target."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd

from ml_platform.core.labels import Labels
from ml_platform.core.model import FeatureEncoder, Model
from ml_platform.spec import ModelSpec

CLASSES = ["low", "mid", "high"]  # code order: not alphabetical, so nothing may sort the names
TARGET = "size_class"


def _rows(rng: np.random.Generator, n: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "size": rng.normal(size=n),
            "speed": rng.uniform(0, 10, size=n),
            "shape": rng.choice(["round", "square", "flat"], size=n),
        }
    )
    score = frame["size"] + 0.3 * frame["speed"] + (frame["shape"] == "round") * 1.5
    codes = np.digitize(score + rng.normal(scale=0.4, size=n), [1.0, 2.5])
    frame[TARGET] = pd.Series(np.array(CLASSES, dtype=object)[codes], dtype=object)
    return frame


def text_multiclass(unseen: int = 7, missing: int = 3) -> tuple[Model, pd.DataFrame, pd.DataFrame]:
    """(model, training rows, held-out rows): 600 training rows, 400 held-out rows of which the first `unseen`
    hold the label "huge" (never seen in training) and the next `missing` hold none."""
    rng = np.random.default_rng(11)
    train, test = _rows(rng, 600), _rows(rng, 400)
    test.loc[: unseen - 1, TARGET] = "huge"
    test.loc[unseen : unseen + missing - 1, TARGET] = None
    encoder = FeatureEncoder.fit(train, ["size", "speed"], ["shape"])
    codes = train[TARGET].map({c: i for i, c in enumerate(CLASSES)}).to_numpy()
    data = lgb.Dataset(encoder.transform(train), codes, feature_name=encoder.names, categorical_feature=[2])
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
    manifest = {"task": "multiclass", "classes": CLASSES, "target": TARGET}
    return Model(booster, encoder, manifest), train, test


def origin_model(train: pd.DataFrame) -> Model:
    """A real 3-class model of a flight's origin airport (EWR, JFK, LGA: text labels) on feature rows."""
    encoder = FeatureEncoder.fit(train, ["distance", "sched_dep_time", "temp"], ["carrier", "dest"])
    labels = Labels("multiclass", ("EWR", "JFK", "LGA"))
    data = lgb.Dataset(
        encoder.transform(train),
        labels.encode(train["origin"].astype(str)),
        feature_name=encoder.names,
        categorical_feature=[3, 4],
    )
    booster = lgb.train(
        {"objective": "multiclass", "num_class": 3, "num_leaves": 15, "verbose": -1, "seed": 0},
        data,
        num_boost_round=20,
    )
    return Model(booster, encoder, {"task": "multiclass", "classes": list(labels.classes)})


def with_target(spec: ModelSpec, task: str, **target) -> ModelSpec:
    """The flight spec with another task and target (`origin` is then no longer a feature), and the task's
    default metric for its gates and live performance."""
    data = spec.model_dump(by_alias=True, exclude={"path"})
    data["task"], data["target"] = task, target
    data["features"]["categorical"] = [c for c in data["features"]["categorical"] if c != "origin"]
    data["gates"]["metric"] = {"binary": "roc_auc", "multiclass": "macro_f1"}[task]
    data["monitoring"]["performance"]["metric"] = data["gates"]["metric"]
    return ModelSpec.model_validate(data)
