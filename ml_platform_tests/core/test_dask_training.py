"""The Dask engine's pure parts on a real LocalCluster: stored partitions read lazily and written by the workers,
the training set and data versions equal to the local engine's, training on the workers, and the cluster's
errors (an unreachable scheduler, a partition too large for a worker)."""

from __future__ import annotations

import socket

import numpy as np
import pandas as pd
import pytest
from upath import UPath

from ml_platform.core import binning, dask_cluster, dask_frames, dask_training
from ml_platform.core.data_versions import versions_by_day
from ml_platform.core.evaluation import encoded_target, task_metrics
from ml_platform.core.training import early_stopping_round, train
from ml_platform.core.training_run import SPLIT, build_training_set, split_of


@pytest.fixture(scope="module")
def client():
    client = dask_cluster.connect(dask_cluster.ClusterSettings(n_workers=2))
    yield client
    client.close()


@pytest.fixture(scope="module")
def stored_features(features, spec, tmp_path_factory):
    """The window's features stored one file per day, as the IO manager stores them."""
    folder = tmp_path_factory.mktemp("features")
    days = features[spec.timestamp].dt.strftime("%Y-%m-%d")
    for day, part in features.groupby(days):
        part.reset_index(drop=True).to_parquet(folder / f"{day}.parquet", index=False)
    keys = sorted(days.unique())
    return dask_frames.read_partitions([UPath(folder / f"{k}.parquet") for k in keys], keys), keys


def test_the_training_set_and_its_versions_equal_the_local_engines(client, stored_features, features, spec, tmp_path):
    stored, keys = stored_features
    assert stored.frame.npartitions == len(keys) == 56 and min(stored.sizes.values()) > 0
    on_dask = dask_training.build_training_set_on_dask(stored, spec, keys)
    local = build_training_set(features, spec, keys)
    assert on_dask.summary == local.summary and on_dask.versions == local.versions
    assert on_dask.metadata()["rows"] == len(local.frame)

    folder = UPath(tmp_path / "training_set.parquet")
    assert dask_frames.write_partitions(on_dask.frame, folder) == len(local.frame)
    assert len(list(folder.iterdir())) == 56
    written = dask_frames.read_partitions([folder])
    assert dask_training.versions_on_dask(written, spec.timestamp) == versions_by_day(
        local.frame.drop(columns=SPLIT), spec.timestamp
    )
    back = pd.read_parquet(tmp_path / "training_set.parquet")
    assert back[SPLIT].tolist() == local.frame[SPLIT].tolist()


@pytest.fixture(scope="module")
def stored_training_set(client, stored_features, spec, tmp_path_factory) -> UPath:
    """The window's training set built and stored by the workers."""
    stored, keys = stored_features
    folder = UPath(tmp_path_factory.mktemp("training_set") / "training_set.parquet")
    dask_frames.write_partitions(dask_training.build_training_set_on_dask(stored, spec, keys).frame, folder)
    return folder


def _bins(model) -> str:
    """The model's bin boundaries per feature, as LightGBM saves them (`feature_infos`)."""
    return next(line for line in model.booster.model_to_string().splitlines() if line.startswith("feature_infos="))


def test_training_on_the_workers_matches_the_local_engine(client, stored_training_set, spec, training_set):
    folder = stored_training_set
    result = dask_training.train_on_dask(spec, dask_frames.read_partitions([folder]), client)
    manifest = result.model.manifest
    assert manifest["engine"] == {"name": "dask", "workers": 2}
    assert manifest["fit"]["rows"] == int((training_set[SPLIT] != "test").sum())
    assert result.model.booster.num_trees() == manifest["fit"]["rounds"] == result.best_iteration
    # every categorical level of the fitted rows, as the local encoder collects them
    fitted = training_set[training_set[SPLIT] != "test"]
    for name in spec.features.all_categorical:
        assert result.model.encoder.levels[name] == sorted(fitted[name].dropna().astype(str).unique())
    # the rounds: LightGBM's early stopping replayed on every validation row's per-round metrics
    assert "validation days" in manifest["fit"]["rounds_chosen_by"]
    curve = result.learning_curve["valid"]
    assert len(curve["auc"]) == spec.training.num_boost_round
    assert early_stopping_round(curve, spec.training.early_stopping_rounds) == result.best_iteration
    # the binned per-round AUC is the exact AUC of the model at the chosen round, to the bin width
    assert abs(curve["auc"][result.best_iteration - 1] - manifest["metrics"]["valid_roc_auc"]) < 2e-3
    local = train(spec, split_of(training_set))
    test = split_of(training_set).test
    aucs = [
        task_metrics("binary", encoded_target(m, test), m.predict(test))["roc_auc"] for m in (result.model, local.model)
    ]
    print("rounds dask/local", result.best_iteration, local.best_iteration, "auc", aucs)
    # both engines bin every feature from the same rows: the same split candidates, the same first trees
    assert _bins(result.model) == _bins(local.model)
    # Both engines stop on the validation log loss (the AUC flattens within a few rounds and then wanders by
    # noise: stopping on it chose 6 rounds locally and 4 to 38 on Dask, run after run; now 37 and 48).
    assert min(result.best_iteration, local.best_iteration) >= 20
    assert abs(aucs[0] - aucs[1]) < 0.005
    # Each partition's worker and rank are fixed by rule and the network's ports are not saved, so a second fit of
    # the same rows on as many workers is byte-identical (what `ml-platform reproduce` compares).
    again = dask_training.train_on_dask(spec, dask_frames.read_partitions([folder]), client)
    text = result.model.booster.model_to_string()
    assert text == again.model.booster.model_to_string() and manifest == again.model.manifest
    assert "[machines: ]" in text and "[local_listen_port: ]" in text and "[num_machines: 2]" in text


def test_past_the_bin_sample_both_engines_bin_from_the_same_rows_and_grow_the_same_first_tree(
    client, stored_training_set, spec, training_set
):
    """Past LightGBM's bin sample (200,000 rows by default; 2,000 here) each engine drew its own: the local one at
    random, each Dask rank from its own rows. Both take every k-th fitted row in training-set order instead, so
    they split on the same candidate values and grow the same first tree. What is left between them is LightGBM's
    data-parallel learner: it knows a leaf's row count only as estimated from its hessian sum (the serial learner
    counts the rows), so a count limit (`min_data_in_leaf`, `min_data_per_group`) can admit a split on one engine
    and not on the other, and the trees part from the second on."""
    params = {**spec.training.params, "bin_construct_sample_cnt": 2000}
    assert binning.sample_step(int((training_set[SPLIT] != "test").sum()), params) >= 10
    sampled = spec.model_copy(update={"training": spec.training.model_copy(update={"params": params})})
    on_dask = dask_training.train_on_dask(sampled, dask_frames.read_partitions([stored_training_set]), client).model
    local = train(sampled, split_of(training_set)).model
    assert _bins(on_dask) == _bins(local)
    assert _bins(local) != _bins(train(spec, split_of(training_set)).model)  # the sample's bins, not every row's
    assert _trees(on_dask)[0] == _trees(local)[0]


def _trees(model) -> list[str]:
    """Each tree's text without the row counts it records (estimated on Dask, counted locally)."""
    text = model.booster.model_to_string().split("end of trees")[0]
    return [
        "\n".join(line for line in tree.splitlines() if not line.startswith(("leaf_count=", "internal_count=")))
        for tree in text.split("Tree=")[1:]
    ]


def test_the_workers_are_read_from_the_scheduler_not_from_a_cache_the_client_empties(client):
    """The client's periodic refresh of its scheduler cache (every 2 s by default, every 5 ms here) writes it
    without the workers; a read that raced it saw none, and a training that lost no worker failed as if both had
    left."""
    import dask
    from distributed import Client

    with dask.config.set({"distributed.client.scheduler-info-interval": "5ms"}):
        racing = Client(client.scheduler.address, set_as_default=False)
    try:
        seen = [len(dask_cluster.worker_memory(racing)) for _ in range(400)]
    finally:
        racing.close()
    assert set(seen) == {2}


def test_an_unreachable_scheduler_names_its_address_and_the_variable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(dask_cluster.ClusterError, match=f"tcp://127.0.0.1:{port}.*ML_PLATFORM_DASK_ADDRESS"):
        dask_cluster.connect(dask_cluster.ClusterSettings(address=f"tcp://127.0.0.1:{port}", connect_timeout_s=1))


def test_a_partition_larger_than_a_worker_can_hold_is_refused_by_name(client):
    limit = min(dask_cluster.worker_memory(client).values())
    dask_cluster.check_partition_memory(client, {"small.parquet": limit // 10})
    with pytest.raises(dask_cluster.ClusterError, match=r"partition big\.parquet .*ML_PLATFORM_DASK_MEMORY_LIMIT"):
        dask_cluster.check_partition_memory(client, {"small.parquet": 1, "big.parquet": limit})


def _target_of(features: pd.DataFrame, case: str, valid_day) -> pd.Series:
    """A target per case; the text cases also carry a label never seen in training on the validation days."""
    counts = (features["distance"] > 700) * 1 + (features["distance"] > 1500) * 1
    if case == "regression":
        return features["distance"] / 100 + features["sched_dep_time"] / 1000
    if case == "multiclass":
        return counts
    text = (
        pd.Series(np.array(["lo", "mid", "hi"])[counts], index=features.index)
        if case == "multiclass_text"
        else pd.Series(np.where(features["delayed"] == 1, "yes", "no"), index=features.index)
    )
    late = features[features["scheduled_departure"].dt.normalize() == valid_day].index[:25]
    return text.where(~text.index.isin(late), "never-seen")


@pytest.mark.parametrize("case", ["multiclass", "regression", "multiclass_text", "binary_text"])
def test_the_per_round_validation_curve_is_exact_for_every_task(client, features, spec, case, tmp_path):
    """The curve the workers sum round by round ends, at the chosen round, at the exact validation metrics of
    that model: multiclass log loss and error, regression RMSE and L1 (both additive, so exact). Text labels
    are coded as the local engine codes them; rows with a label outside the classes are left out of both."""
    task = case.removesuffix("_text")
    days = sorted(features[spec.timestamp].dt.normalize().unique())[-24:]  # 10 fitted days: exactness needs no more
    features = features[features[spec.timestamp] >= days[0]]
    valid_day = days[-(spec.training.test_days + 1)]
    frame = features.assign(delayed=_target_of(features, case, valid_day))
    target = spec.target.model_copy(update={"positive": "yes"}) if case == "binary_text" else spec.target
    changed = spec.model_copy(
        update={
            "task": task,
            "target": target,
            "training": spec.training.model_copy(
                update={"num_boost_round": 60, "early_stopping_rounds": 10, "refit": False}
            ),
        }
    )
    folder = tmp_path / "features"
    folder.mkdir()
    days = frame[spec.timestamp].dt.strftime("%Y-%m-%d")
    for day, part in frame.groupby(days):
        part.reset_index(drop=True).to_parquet(folder / f"{day}.parquet", index=False)
    keys = sorted(days.unique())
    stored = dask_frames.read_partitions([UPath(folder / f"{k}.parquet") for k in keys], keys)
    written = UPath(tmp_path / "training_set.parquet")
    dask_frames.write_partitions(dask_training.build_training_set_on_dask(stored, changed, keys).frame, written)
    result = dask_training.train_on_dask(changed, dask_frames.read_partitions([written]), client)
    curve, at = result.learning_curve["valid"], result.best_iteration - 1
    metrics = result.model.manifest["metrics"]
    assert result.model.booster.num_trees() == result.best_iteration * (3 if task == "multiclass" else 1)
    if case.endswith("_text"):  # the label never seen in training: left out of the fit and counted
        assert result.model.manifest["labels_unseen"] == {"train": 0, "valid": 25}
        valid_rows = int((pd.read_parquet(written)[SPLIT] == "valid").sum())
        assert result.model.manifest["rows"]["valid"] == valid_rows - 25
    if case == "binary_text":
        assert result.model.classes == ["no", "yes"] and result.model.manifest["positive"] == "yes"
        assert curve["binary_logloss"][at] == pytest.approx(metrics["valid_log_loss"], rel=1e-6)
    elif task == "multiclass":
        assert result.model.classes == ([0, 1, 2] if case == "multiclass" else ["hi", "lo", "mid"])
        assert curve["multi_logloss"][at] == pytest.approx(metrics["valid_log_loss"], rel=1e-6)
        assert curve["multi_error"][at] == pytest.approx(1 - metrics["valid_accuracy"], abs=1e-9)
    else:
        assert curve["rmse"][at] == pytest.approx(metrics["valid_rmse"], rel=1e-6)
        assert curve["l1"][at] == pytest.approx(metrics["valid_mae"], rel=1e-6)


def test_a_fit_that_fails_because_a_worker_died_says_which_worker_left():
    """A killed peer often surfaces first as LightGBM's socket error on a surviving worker, before the
    scheduler has removed the dead one: the fit still reports the worker that left, not the socket error."""
    import os
    import signal

    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None)
    try:
        with Client(cluster, set_as_default=False) as own:
            victim, pid = sorted(own.run(os.getpid).items())[0]

            def fit():
                os.kill(pid, signal.SIGKILL)
                raise RuntimeError("Socket recv error, Connection reset by peer (code: 104)")

            with pytest.raises(dask_cluster.ClusterError, match=f"{victim}.* left the cluster during training"):
                dask_cluster.watched(own, fit)
    finally:
        cluster.close()
