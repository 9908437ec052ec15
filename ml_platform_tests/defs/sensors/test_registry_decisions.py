"""Registry decisions on live outcomes against a real Dagster instance and MLflow registry: rollback of a
regressing champion (beside a model whose registry cannot be read), online champion/challenger.
"""

from __future__ import annotations

import json

import dagster as dg
import mlflow

from ml_platform.core.model import Model
from ml_platform.core.registry import Registry
from ml_platform.defs import build_definitions
from ml_platform.spec import load_spec
from ml_platform_tests.defs.helpers import (
    _aliases,
    _client,
    _day,
    _day_features,
    _log_traffic,
    _materialize,
    _metadata,
    _partitions,
    _retrain,
    _served_day,
)


def test_a_new_champion_worse_live_than_the_previous_is_rolled_back(
    platform, instance, webhook, monkeypatch, tmp_path, write_spec
):
    """Beside it in the code location, a model whose registry holds an audit record nobody can read: it is
    named and logged on every tick, and the rollback of the other goes ahead."""
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make({"gates.max_regression": 1.0})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success
    assert _retrain(defs, instance, partitions[1]).success
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    broken = write_spec(
        tmp_path / "specs", {"name": "broken"}, name="broken.yaml", base=tmp_path / "specs" / "spec.yaml"
    )
    client = _client(home)
    client.create_registered_model("broken")
    client.set_registered_model_tag("broken", "audit.20260101T000000.000000.promote", "{not json")
    defs = build_definitions([load_spec(tmp_path / "specs" / "spec.yaml"), load_spec(broken)])
    sensor = defs.resolve_sensor_def("rollback_on_regression")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    waiting = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
    assert "flight_delay: not enough labelled live rows" in waiting.skip_message
    assert waiting.skip_message.splitlines()[0].startswith("broken: FAILED (JSONDecodeError")

    run_id = _client(home).get_model_version("flight_delay", "1").run_id
    model = Model.load(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="model_files"))
    days = [_day(partitions[1], d) for d in (2, 3)]
    for day, version, invert in ((days[0], "1", False), (days[1], "2", True)):
        served = _day_features(home, day)
        scores = model.predict(served)
        _log_traffic(home, day, served, (1 - scores if invert else scores).tolist(), version=version)  # v2 serves badly
        assert _materialize(defs, instance, "performance", day).success
    judged = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, definitions=defs))
    (redeploy,) = judged.run_requests  # the endpoint's smoke test proves the restored version serves
    assert redeploy.job_name == "flight_delay_deploy"
    assert redeploy.asset_selection == [dg.AssetKey(["flight_delay", "endpoint"])]
    assert redeploy.tags["ml_platform/model"] == "flight_delay"
    assert set(json.loads(judged.cursor)["_failed"]) == {"broken"}  # still unreadable, still named
    assert redeploy.tags["ml_platform/reason"] == "rollback"
    assert redeploy.tags["ml_platform/trigger"].startswith("v2 → v1")
    assert _aliases(home) == {"champion": "1", "previous": "2"}
    history = Registry(_client(home), "flight_delay").history()
    assert history[-1]["action"] == "rollback" and history[-1]["trigger"] == "rollback_on_regression"
    (alert,) = [a for a in received if a["kind"] == "rollback"]
    assert alert["from_version"] == "2" and alert["to_version"] == "1"
    again = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, cursor=judged.cursor))
    assert "flight_delay: no fresh promotion" in again.skip_message and _aliases(home)["champion"] == "1"
    # Nothing moved since: the next tick repeats the finding without reading flight_delay's registry, which is
    # made unreadable here (only a read would notice); once the last look is old enough, it is read again.
    client.set_registered_model_tag("flight_delay", "audit.29990101T000000.000000.note", "{not json")
    quiet = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources, cursor=again.cursor))
    assert quiet.skip_message == again.skip_message
    assert json.loads(quiet.cursor)["flight_delay"] == json.loads(again.cursor)["flight_delay"]
    aged = json.loads(quiet.cursor)
    aged["flight_delay"]["at"] -= 3600
    reread = sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=json.dumps(aged))
    )
    assert set(json.loads(reread.cursor)["_failed"]) == {"broken", "flight_delay"}


def test_a_rollback_judges_both_champions_on_the_same_requests(platform, instance, webhook, monkeypatch):
    """While a new champion is fresh the endpoint scores the previous one beside it; the rollback decision
    compares the two on those same labelled requests."""
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make(
        {
            "gates.max_regression": 1.0,
            "monitoring.performance.rollback_tolerance": 0.0,
            "monitoring.performance.rollback_min_rows": 400,
        }
    )
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success and _retrain(defs, instance, partitions[1]).success
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    sensor = defs.resolve_sensor_def("rollback_on_regression")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    tick = lambda: sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
    )
    first, second = [_day(partitions[1], d) for d in (2, 3)]

    _served_day(home, first, answer=("2", False), shadow=("1", False))  # both score alike: keep v2
    assert _materialize(defs, instance, "performance", first).success
    kept = tick()
    assert kept.run_requests == [] and "v2 kept" in kept.skip_message
    assert "on the same 500 labelled requests" in kept.skip_message

    _served_day(home, second, answer=("2", True), shadow=("1", False))  # v2 ranks the next day's outcomes badly
    assert _materialize(defs, instance, "performance", second).success
    (redeploy,) = tick().run_requests
    assert "on the same 1000 labelled requests" in redeploy.tags["ml_platform/trigger"]
    assert _aliases(home) == {"champion": "1", "previous": "2"}
    assert [a["kind"] for a in received] == ["rollback"]


def test_a_challenger_on_trial_is_promoted_when_it_wins_online_and_retired_when_it_loses(
    platform, instance, webhook, monkeypatch
):
    url, received = webhook
    monkeypatch.setenv("ML_PLATFORM_ALERT_WEBHOOK", url)
    make, home = platform
    defs = make({"gates.max_regression": 1.0, "serving.rollout": {"mode": "shadow", "trial_days": 2, "min_rows": 800}})
    partitions = _partitions(defs)
    assert _retrain(defs, instance, partitions[0]).success  # the first model has nobody to beat: champion
    trial = _retrain(defs, instance, partitions[1])
    assert trial.success and _metadata(trial, "champion")["action"] == "online-trial"
    assert _aliases(home) == {"champion": "1", "challenger": "2"}
    assert _client(home).get_model_version("flight_delay", "2").tags["gates"] == "passed"

    sensor = defs.resolve_sensor_def("online_challenger")
    resources = {"mlflow_tracking": defs.resources["mlflow_tracking"]}
    tick = lambda cursor=None: sensor.evaluate_tick(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=cursor, definitions=defs)
    )
    assert "0 of 2 days" in tick().skip_message

    days = [_day(partitions[1], d) for d in (1, 2, 3, 4)]
    for day in days[:2]:  # v1 answers badly; v2, scoring the same requests in shadow, ranks them well
        _served_day(home, day, answer=("1", True), shadow=("2", False))
        result = _materialize(defs, instance, "performance", day)
        (compared,) = _metadata(result, "performance")["paired_comparison"]
        assert (compared["champion"], compared["other"], compared["rows"]) == ("1", "2", 500)
        assert compared["gain"] > 0
    decided = tick()
    (request,) = decided.run_requests
    assert request.job_name == "flight_delay_deploy"
    assert request.asset_selection == [dg.AssetKey(["flight_delay", "endpoint"])]
    assert request.tags["ml_platform/reason"] == "online challenger won"
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    promotion = Registry(_client(home), "flight_delay").history()[-1]
    assert promotion["action"] == "promote" and promotion["trigger"] == "online_challenger"
    assert promotion["days"] == days[:2] and promotion["rows"] == 1000 and set(promotion["gates"]) >= {"metric_floor"}
    assert [a["kind"] for a in received] == ["challenger_promoted"]
    assert "no challenger on trial" in tick(decided.cursor).skip_message

    # The next gated model goes on trial against v2, loses on the same outcomes, and is retired.
    assert _retrain(defs, instance, partitions[2]).success
    assert _aliases(home) == {"champion": "2", "previous": "1", "challenger": "3"}
    for day in days[2:]:
        _served_day(home, day, answer=("2", False), shadow=("3", True))
        assert _materialize(defs, instance, "performance", day).success
    retired = tick()
    assert retired.run_requests == [] and "retired v3" in retired.skip_message
    assert _aliases(home) == {"champion": "2", "previous": "1"}
    assert Registry(_client(home), "flight_delay").history()[-1]["action"] == "retire-challenger"
    assert [a["kind"] for a in received] == ["challenger_promoted", "challenger_retired"]
