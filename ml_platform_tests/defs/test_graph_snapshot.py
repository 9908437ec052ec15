"""The asset graph of every bundled spec, pinned: keys, deps and their partition mappings, partitions, checks
and their blocking flag, group, owners, kinds, tags, IO manager, freshness and automation conditions, jobs,
schedules and sensors. A change to the wiring that changes what users see in the UI fails here first.

Regenerate deliberately with `ML_PLATFORM_UPDATE_SNAPSHOTS=1 make test PYTEST_ARGS=-k snapshot` and review the
diff of `snapshots/<spec>.json`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.spec import load_spec, spec_files

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE_ENV = "ML_PLATFORM_UPDATE_SNAPSHOTS"
# A fixed replay, so partition bounds do not depend on the day the test runs.
PINNED_OFFSET_DAYS = 7 * 600


def _partitions(definition) -> dict | None:
    if definition is None:
        return None
    if isinstance(definition, dg.TimeWindowPartitionsDefinition):
        return {
            "type": type(definition).__name__,
            "cron": definition.cron_schedule,
            "fmt": definition.fmt,
            "start": definition.start.isoformat(),
            "end": definition.end.isoformat() if definition.end else None,
            "timezone": definition.timezone,
        }
    return {"type": type(definition).__name__, "repr": repr(definition)}


def _condition(condition) -> object:
    return None if condition is None else json.loads(dg.serialize_value(condition))


def _freshness(policy) -> object:
    return None if policy is None else json.loads(dg.serialize_value(policy))


def _mapping(mapping) -> object:
    return None if mapping is None else json.loads(dg.serialize_value(mapping))


def graph_snapshot(defs: dg.Definitions, digest: str) -> dict:
    """Everything about the graph a user sees, as plain JSON; the spec's digest is shown as a placeholder."""
    repository = defs.get_repository_def()
    graph = repository.asset_graph
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        spec_by_key = {s.key: s for s in graph.assets_def_for_key(key).specs}
        spec = spec_by_key[key]
        assets_def = graph.assets_def_for_key(key)
        assets[key.to_user_string()] = {
            "deps": {
                dep.to_user_string(): _mapping(assets_def.get_partition_mapping(dep))
                for dep in sorted(node.parent_keys, key=lambda k: k.to_user_string())
            },
            "partitions": _partitions(node.partitions_def),
            "checks": {
                check.name: {"blocking": check.blocking, "partitioned": check.partitions_def is not None}
                for check in sorted(assets_def.check_specs, key=lambda c: c.name)
            },
            "group": spec.group_name,
            "owners": list(spec.owners),
            "kinds": sorted(spec.kinds),
            "tags": {k: v for k, v in sorted(spec.tags.items()) if not k.startswith("dagster/kind/")},
            "code_version": "<spec digest>" if spec.code_version == digest else spec.code_version,
            "io_manager_key": assets_def.get_io_manager_key_for_asset_key(key)
            if key in assets_def.keys and assets_def.node_def is not None
            else None,
            "backfill_policy": repr(node.backfill_policy) if node.backfill_policy else None,
            "freshness_policy": _freshness(getattr(spec, "freshness_policy", None)),
            "automation_condition": _condition(node.automation_condition),
        }
    jobs = {}
    for job in sorted(repository.get_all_jobs(), key=lambda j: j.name):
        if job.name.startswith("__ASSET_JOB"):
            continue
        selected = sorted(k.to_user_string() for k in (job.asset_layer.selected_asset_keys if job.asset_layer else []))
        jobs[job.name] = {
            "assets": selected,
            "ops": sorted(job.graph.node_dict) if not selected else [],
            "tags": dict(sorted(job.tags.items())),
            "partitions": _partitions(job.partitions_def),
        }
    schedules = {
        s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
        for s in sorted(repository.schedule_defs, key=lambda s: s.name)
    }
    sensors = {}
    for sensor in sorted(repository.sensor_defs, key=lambda s: s.name):
        targets = [
            target.job_name for target in sensor.targets if target.has_job_def or getattr(target, "job_name", None)
        ]
        sensors[sensor.name] = {
            "type": type(sensor).__name__,
            "default_status": sensor.default_status.value,
            "minimum_interval_seconds": sensor.minimum_interval_seconds,
            "targets": sorted(t for t in targets if not t.startswith("__ASSET_JOB")),
            "asset_targets": sorted(
                k.to_user_string()
                for k in (sensor.asset_selection.resolve(graph) if sensor.asset_selection is not None else [])
            ),
        }
    return {"assets": assets, "jobs": jobs, "schedules": schedules, "sensors": sensors}


# Variants of the bundled spec that switch on the optional wiring (online rollout, approvals, a files source
# with one file per day and its new-data sensor, no freshness policies).
VARIANTS = {
    "canary_with_approval": {
        "serving.rollout": {"mode": "canary", "fraction": 0.2, "key": "carrier"},
        "gates.require_approval": True,
    },
    "daily_files": {
        "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
        "partitions": {"cadence": "daily", "start": "2024-01-01", "end": "2024-06-01"},
        "training.cadence": "daily",
        "monitoring.model_freshness": None,
        "monitoring.endpoint_freshness": None,
    },
}
CASES = [(path.stem, path, None) for path in spec_files()] + [
    (f"flight_delay_{name}", None, overrides) for name, overrides in VARIANTS.items()
]


@pytest.mark.parametrize("name,spec_file,overrides", CASES, ids=[case[0] for case in CASES])
def test_asset_graph_matches_its_snapshot(name, spec_file, overrides, home, tmp_path, write_spec):
    from ml_platform.defs import build_definitions

    if overrides is not None:
        spec_file = write_spec(tmp_path / "specs", overrides)
    pin = home / "replay" / f"{load_spec(spec_file).name}.json"
    pin.parent.mkdir(parents=True, exist_ok=True)
    pin.write_text(json.dumps({"offset_days": PINNED_OFFSET_DAYS, "pinned_on": "2024-01-01"}))
    spec = load_spec(spec_file)
    snapshot = graph_snapshot(build_definitions([spec]), spec.digest)
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(snapshot, indent=1, sort_keys=True) + "\n"
    if os.environ.get(UPDATE_ENV):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no snapshot for {spec_file.name}: run with {UPDATE_ENV}=1 once and commit it"
    assert json.loads(text) == json.loads(path.read_text()), (
        f"the asset graph of {spec_file.name} changed; if that is intended, regenerate with {UPDATE_ENV}=1 "
        f"and review the diff of {path}"
    )
