"""Materialize a small flight_delay graph for the browser tests, in its own process, and print what was made.

    python ml_platform_tests/ui/small_graph.py ROOT

Writes ROOT/specs/flight_delay.yaml (the bundled spec on a pinned replay with a two-week training window) and
ROOT/specs/flight_origin.yaml (a multiclass model on text labels: which airport a departure leaves from), and
materializes into ROOT/home (ML_PLATFORM_HOME; Dagster's home is ROOT/home/dagster with the repo's dagster.yaml,
as `make dev` sets it up): raw and features for 15 days, the first training week (training_set → model →
evaluation with its four gates → champion) of both models, and flight_delay's drift for the day after the
window. Runs in process through the platform's Python API (the Definitions the code location builds). The last
stdout line is JSON with the facts the tests compare the UI against: flight_delay's stages, edges and checks,
the partitions, the gates' results, the model card's Markdown and the drift partition's metadata; and the
multiclass model's name, week, version and model card.

A separate process keeps the test session's environment and MLflow's process-wide tracking URI untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
OFFSET_WEEKS = 600  # 2013-01-01 replays as 2024-07-02, a Tuesday like the original
DAYS = 15  # a two-week training window, and one more day for drift


def write_spec(folder: Path, serving_port: int) -> Path:
    data = yaml.safe_load((REPO / "ml_platform" / "bundled_specs" / "flight_delay.yaml").read_text())
    data["source"]["offset_weeks"] = OFFSET_WEEKS
    data["training"].update(window_days=14, validation_days=3, test_days=3)
    data["gates"]["min"] = 0.55  # a two-week winter window: these tests are about the UI, not the model
    data["gates"]["fairness"]["max_gap"] = 0.5
    data["serving"]["port"] = serving_port  # never the default port, should anything deploy
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "flight_delay.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def write_multiclass_spec(folder: Path, serving_port: int) -> Path:
    """flight_origin (ml_platform_tests/specs/): the departure airport (EWR, JFK or LGA, text labels), on the
    same replay and window as flight_delay, served on its own port."""
    data = yaml.safe_load((REPO / "ml_platform_tests" / "specs" / "flight_origin.yaml").read_text())
    assert data["source"]["offset_weeks"] == OFFSET_WEEKS
    data["serving"] = {"port": serving_port}
    path = folder / "flight_origin.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def _metadata(result, stage: str) -> dict:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == stage]
    return {k: v.value for k, v in event.step_materialization_data.materialization.metadata.items()}


def build(root: Path, serving_port: int) -> dict:
    home = root / "home"
    os.environ["ML_PLATFORM_HOME"] = str(home)
    for variable in [v for v in os.environ if v.startswith("MLFLOW_")]:
        os.environ.pop(variable)
    spec_file = write_spec(root / "specs", serving_port)
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster.yaml", dagster_home / "dagster.yaml")

    import dagster as dg

    from ml_platform.defs import build_definitions
    from ml_platform.spec import load_spec

    spec, multiclass = load_spec(spec_file), load_spec(write_multiclass_spec(root / "specs", serving_port + 1))
    defs = build_definitions([spec, multiclass])
    graph = defs.resolve_asset_graph()

    def key(stage: str, model: str = spec.name) -> dg.AssetKey:
        return dg.AssetKey([model, stage])

    first = date(2013, 1, 1) + timedelta(weeks=OFFSET_WEEKS)
    days = [(first + timedelta(days=i)).isoformat() for i in range(DAYS)]
    week = defs.resolve_assets_def(key("model")).partitions_def.get_partition_keys()[0]
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        job = defs.resolve_implicit_global_asset_job_def()
        data = job.execute_in_process(
            instance=instance,
            asset_selection=[
                key(stage, model) for model in (spec.name, multiclass.name) for stage in ("raw", "features")
            ],
            tags={"dagster/asset_partition_range_start": days[0], "dagster/asset_partition_range_end": days[-1]},
        )
        assert data.success, "raw → features failed"
        retrain, retrain_multiclass = (
            defs.resolve_job_def(f"{model}_retrain").execute_in_process(
                instance=instance, partition_key=week, raise_on_error=False
            )
            for model in (spec.name, multiclass.name)
        )
        assert retrain.success, "training_set → champion failed"
        assert retrain_multiclass.success, f"{multiclass.name}: training_set → champion failed"
        drift = job.execute_in_process(instance=instance, partition_key=days[-1], asset_selection=[key("drift")])
        assert drift.success, "drift failed"

    evaluation, drift_metadata = _metadata(retrain, "evaluation"), _metadata(drift, "drift")
    ours = [k for k in graph.get_all_asset_keys() if k.path[0] == spec.name]
    return {
        "model": spec.name,
        "stages": sorted(k.path[-1] for k in ours),
        "edges": sorted([p.path[-1], k.path[-1]] for k in ours for p in graph.get(k).parent_keys),
        "checks": sorted(
            [c.asset_key.path[-1], c.name, graph.get_check_spec(c).blocking]
            for c in graph.asset_check_keys
            if c.asset_key.path[0] == spec.name
        ),
        "days": days,
        "week": week,
        "drift_day": days[-1],
        "gates": [
            {"name": e.check_name, "passed": e.passed, "detail": e.description}
            for e in retrain.get_asset_check_evaluations()
            if e.asset_key == key("evaluation")
        ],
        "schema": [
            {"partition": e.partition, "passed": e.passed}
            for e in data.get_asset_check_evaluations()
            if e.check_name == "schema" and e.asset_key == key("raw")
        ],
        "version": str(evaluation["version"]),
        "model_card": evaluation["model_card"],
        "drift": {
            "live_source": drift_metadata["live_source"],
            "features": drift_metadata["features"],
            "chart": drift_metadata.get("chart"),
        },
        "multiclass": _multiclass_facts(multiclass.name, week, _metadata(retrain_multiclass, "evaluation")),
    }


def _multiclass_facts(model: str, week: str, evaluation: dict) -> dict:
    return {
        "model": model,
        "week": week,
        "version": str(evaluation["version"]),
        "model_card": evaluation["model_card"],
        "confusion_matrix": evaluation.get("confusion_matrix"),
    }


if __name__ == "__main__":
    facts = build(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 18080)
    print(json.dumps(facts))
