"""The spec's schema: the bundled spec parses into typed sections; the digest follows meaning, not names."""

from __future__ import annotations

from datetime import timedelta

from ml_platform.spec import load_spec


def test_bundled_spec_is_valid(flight_spec):
    assert flight_spec.name == "flight_delay"
    assert flight_spec.task == "binary"
    assert flight_spec.target.expression == "arr_delay > 15"
    assert flight_spec.target.inputs == ["arr_delay"]
    assert "day_of_week" in flight_spec.features.all_numeric
    assert "carrier" in flight_spec.features.all_categorical
    assert flight_spec.partitions.freshness.fail_after == timedelta(hours=50)
    assert flight_spec.training.cadence == "weekly"
    assert flight_spec.gates.fairness.group == "origin"
    assert flight_spec.expectations.columns["flight_id"].unique


def test_digest_changes_with_meaning(tmp_path, write_spec, flight_spec):
    same = load_spec(write_spec(tmp_path, {}))
    other = load_spec(write_spec(tmp_path, {"training.window_days": 28}, name="b.yaml"))
    assert same.digest == flight_spec.digest
    assert other.digest != flight_spec.digest


def test_refit_written_out_or_left_to_its_default_has_one_digest(tmp_path, write_spec, flight_spec):
    explicit = load_spec(write_spec(tmp_path, {"training.refit": True}))
    off = load_spec(write_spec(tmp_path, {"training.refit": False}, name="off.yaml"))
    assert explicit.training.refit is True and off.training.refit is False
    assert explicit.digest == flight_spec.digest != off.digest


def test_renaming_a_field_keeps_the_digest(tmp_path, write_spec, flight_spec):
    """The digest is every asset's code version: renaming rollout.window_days must not mark them all changed."""
    # The bundled spec's digest; it last changed with serving.limits.compress_above_bytes (every field hashes,
    # default or not).
    assert flight_spec.digest == "df3b2e78a994efb5"
    new = load_spec(write_spec(tmp_path, {"serving.rollout": {"mode": "none", "trial_days": 4}}))
    old = load_spec(write_spec(tmp_path, {"serving.rollout": {"mode": "none", "window_days": 4}}, name="old.yaml"))
    assert new.serving.rollout.trial_days == old.serving.rollout.trial_days == 4
    assert new.digest == old.digest != flight_spec.digest
    assert "window_days" not in new.model_dump()["serving"]["rollout"]


def test_target_name_defaults_to_its_column(tmp_path, write_spec, flight_spec):
    column = load_spec(
        write_spec(
            tmp_path,
            {
                "task": "regression",
                "target": {"column": "dep_delay"},
                "gates": {"metric": "rmse"},
                "monitoring.performance": {},
            },
        )
    )
    named = load_spec(
        write_spec(
            tmp_path,
            {
                "task": "regression",
                "target": {"column": "dep_delay", "name": "late"},
                "gates": {"metric": "rmse"},
                "monitoring.performance": {},
            },
            name="b.yaml",
        )
    )
    expression = load_spec(write_spec(tmp_path, {"target": {"expression": "arr_delay > 15"}}, name="c.yaml"))
    assert column.target.name == "dep_delay" and column.target.inputs == ["dep_delay"]
    assert named.target.name == "late"
    assert expression.target.name == "target" and flight_spec.target.name == "delayed"


def test_classes_and_positive_hash_only_when_set(tmp_path, write_spec, flight_spec):
    """Specs without the two fields keep their digest (every asset's code version); setting either changes it."""
    unset = load_spec(write_spec(tmp_path, {"target.classes": None, "target.positive": None}))
    assert unset.digest == flight_spec.digest == "df3b2e78a994efb5"
    positive = load_spec(write_spec(tmp_path, {"target.positive": True}, name="positive.yaml"))
    classes = load_spec(write_spec(tmp_path, {"target.classes": [False, True]}, name="classes.yaml"))
    both = load_spec(write_spec(tmp_path, {"target.classes": [False, True], "target.positive": True}, name="both.yaml"))
    assert len({flight_spec.digest, positive.digest, classes.digest, both.digest}) == 4
    assert classes.target.classes == [False, True] and positive.target.positive is True


def test_class_labels_keep_their_type(tmp_path, write_spec):
    """Text stays text, numbers numbers and booleans booleans: a label 1 and a label "1" are different classes."""
    spec = load_spec(
        write_spec(
            tmp_path,
            {
                "task": "multiclass",
                "target.expression": "arr_delay // 30",
                "target.classes": [2, "1", True],
                "gates": {},
                "monitoring.performance": {},
            },
        )
    )
    assert [type(c) for c in spec.target.classes] == [int, str, bool]
