"""The champion step's decision over a real registry: promote, hold for approval, trial online, or refuse."""

from __future__ import annotations

import json

import pytest

from ml_platform.core.promotion import EvaluatedVersion, decide_promotion
from ml_platform.core.registry import Registry


def _evaluation(version: str, passed: bool, noop: bool | None = None) -> EvaluatedVersion:
    """The verdict as the champion stage reads it from the evaluation stage's stored row (`noop` None: no such
    column, as in a row stored before no-op retrains existed)."""
    gates = [{"name": "metric_floor", "passed": passed}, {"name": "prediction_sanity", "passed": True}]
    row = {
        "version": version,
        "gates": json.dumps(gates),
        "all_gates_passed": passed,
        "metric": "roc_auc",
        "value": 0.7,
        "champion_value": None,
        **({} if noop is None else {"noop": noop}),
    }
    return EvaluatedVersion.from_stored(row)


@pytest.fixture
def registry(spec, store, logged_version) -> Registry:
    client, _ = store
    logged_version()
    logged_version()
    return Registry(client, spec.name)


def test_a_gated_version_is_promoted_and_a_failed_one_moves_nothing(spec, registry):
    assert decide_promotion(spec, registry, _evaluation("1", True), {"partition": "p"}).action == "promote"
    refused = decide_promotion(spec, registry, _evaluation("2", False), {})
    assert refused.action == "gate-failed" and "metric_floor" in refused.reason
    assert registry.version_of("champion") == "1"


def test_approval_and_online_trials_hold_a_gated_version_back(spec, registry):
    approval = spec.model_copy(update={"gates": spec.gates.model_copy(update={"require_approval": True})})
    assert decide_promotion(approval, registry, _evaluation("1", True), {}).action == "awaiting-approval"
    assert registry.version_of("champion") is None
    decide_promotion(spec, registry, _evaluation("1", True), {})
    rollout = spec.serving.rollout.model_copy(update={"mode": "shadow"})
    shadow = spec.model_copy(update={"serving": spec.serving.model_copy(update={"rollout": rollout})})
    trial = decide_promotion(shadow, registry, _evaluation("2", True), {})
    assert trial.action == "online-trial" and "shadow" in trial.reason
    assert registry.version_of("champion") == "1" and registry.version_of("challenger") == "2"


def test_the_champion_is_not_promoted_or_audited_again(spec, registry):
    decide_promotion(spec, registry, _evaluation("1", True), {})
    history = registry.history()
    for noop in (False, True):
        again = decide_promotion(spec, registry, _evaluation("1", True, noop=noop), {})
        assert again.action == "unchanged" and "already holds champion" in again.reason
    assert registry.history() == history and registry.aliases() == {"champion": "1", "challenger": "2"}


def test_a_no_op_retrain_keeps_the_decision_of_its_version(spec, registry):
    decide_promotion(spec, registry, _evaluation("1", True), {})
    rollout = spec.serving.rollout.model_copy(update={"mode": "shadow"})
    shadow = spec.model_copy(update={"serving": spec.serving.model_copy(update={"rollout": rollout})})
    assert decide_promotion(shadow, registry, _evaluation("2", True), {}).action == "online-trial"
    registry.retire_challenger("lost online", {})
    history = registry.history()
    kept = decide_promotion(shadow, registry, _evaluation("2", True, noop=True), {})
    assert kept.action == "unchanged" and "retire-challenger" in kept.reason
    assert registry.history() == history and registry.aliases() == {"champion": "1"}
    # A retrain that trained (not a no-op) is a new decision, as before.
    fresh = decide_promotion(shadow, registry, _evaluation("2", True, noop=False), {})
    assert fresh.action == "online-trial"


def test_a_no_op_retrain_of_a_never_decided_version_decides_it(spec, registry):
    assert decide_promotion(spec, registry, _evaluation("2", True, noop=True), {}).action == "promote"
    assert registry.aliases() == {"champion": "2"}
