"""The retrain cursor without any orchestrator: which new drift/performance evaluations fail, how far the
cursor moves past evaluations still running or never evaluated, and the cooldown."""

from __future__ import annotations

import json

import pytest

from ml_platform.core.retraining import CheckRecord, RetrainCursor


def _ids(failing) -> list[tuple[str, int]]:
    return [(reason, record.id) for reason, record in failing]


def test_an_empty_cursor_reads_as_nothing_seen_and_never_retrained():
    for text in (None, ""):
        cursor = RetrainCursor.from_json(text)
        assert cursor.last_id == {} and cursor.last_retrain == 0.0 and cursor.since("drift") == 0
    assert json.loads(RetrainCursor().to_json()) == {"last_id": {}}


def test_a_stored_cursor_keeps_its_shape():
    text = json.dumps({"last_id": {"drift": 7, "performance": 3}, "last_retrain": 1700000000.5})
    cursor = RetrainCursor.from_json(text)
    assert cursor == RetrainCursor({"drift": 7, "performance": 3}, 1700000000.5)
    assert json.loads(cursor.to_json()) == json.loads(text)


def test_failures_come_back_oldest_first_and_a_later_pass_does_not_hide_them():
    cursor = RetrainCursor()
    failing = cursor.advance({
        "drift": [CheckRecord(4, "SUCCEEDED"), CheckRecord(2, "FAILED"), CheckRecord(3, "FAILED")],
        "performance": [CheckRecord(5, "FAILED")]})
    assert _ids(failing) == [("drift", 2), ("drift", 3), ("performance", 5)]
    assert cursor.last_id == {"drift": 4, "performance": 5}
    assert cursor.advance({"drift": [CheckRecord(3, "FAILED"), CheckRecord(4, "SUCCEEDED")]}) == []


def test_an_evaluation_still_running_is_looked_at_again_and_one_never_evaluated_is_passed_over():
    cursor = RetrainCursor({"drift": 1})
    running = [CheckRecord(2, "PLANNED", run_finished=False), CheckRecord(3, "FAILED")]
    assert cursor.advance({"drift": running, "performance": [CheckRecord(9, "FAILED")]}) == [
        ("performance", CheckRecord(9, "FAILED"))]
    assert cursor.last_id == {"drift": 1, "performance": 9}  # drift waits at the running evaluation

    died = [CheckRecord(2, "PLANNED", run_finished=True), CheckRecord(3, "FAILED")]
    assert _ids(cursor.advance({"drift": died})) == [("drift", 3)]
    assert cursor.since("drift") == 3


def test_the_caller_gets_its_own_record_back():
    original = object()
    ((_, record),) = RetrainCursor().advance({"drift": [CheckRecord(1, "FAILED", source=original)]})
    assert record.source is original


@pytest.mark.parametrize("last_retrain, now, due", [(0.0, 1.7e9, True), (100.0, 150.0, False),
                                                     (100.0, 160.0, True)])
def test_a_retrain_is_due_once_the_cooldown_is_over(last_retrain, now, due):
    """Never retrained: the cooldown runs from the epoch, so the first failure retrains."""
    assert RetrainCursor(last_retrain=last_retrain).due(now, cooldown_s=60) is due


def test_a_retrain_restarts_the_cooldown_and_is_stored():
    cursor = RetrainCursor({"drift": 2})
    cursor.retrained(500.0)
    assert not cursor.due(530.0, 60) and cursor.due(560.0, 60)
    assert json.loads(cursor.to_json()) == {"last_id": {"drift": 2}, "last_retrain": 500.0}
