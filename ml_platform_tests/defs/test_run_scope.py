"""A run worker told its run builds only that run's models (`defs.run_scope`), and builds the very jobs the whole
location would; anything it can't read or place builds every model."""

from __future__ import annotations

import base64
import sys
import zlib

import dagster as dg
import pytest
from dagster._core.code_pointer import ModuleCodePointer
from dagster._core.origin import JobPythonOrigin, RepositoryPythonOrigin
from dagster._grpc.types import ExecuteRunArgs, ExecuteStepArgs
from dagster_shared.serdes import serialize_value

from ml_platform.defs import build_definitions
from ml_platform.defs.run_scope import models_of_this_run
from ml_platform.spec import load_spec

NAMES = ("m1", "m10", "m1_x")


@pytest.fixture
def specs(tmp_path, home, write_spec):
    """Three models whose names prefix one another."""
    return [
        load_spec(write_spec(tmp_path / "specs", {"name": n, "serving.port": 21500 + i}, name=f"{n}.yaml"))
        for i, n in enumerate(NAMES)
    ]


def _names(specs) -> list[str]:
    return [spec.name for spec in models_of_this_run(specs)]


@pytest.mark.parametrize(
    ("job", "built"),
    [
        (None, list(NAMES)),  # a code server, a test: not a run worker
        ("m1_retrain", ["m1"]),
        ("m10_data", ["m10"]),
        ("m1_x_deploy", ["m1", "m1_x"]),  # `m1`'s job `x_deploy` or `m1_x`'s `deploy`: both, never too few
        ("m1_data", ["m1"]),
        ("other_retrain", list(NAMES)),  # no model claims it
        ("__ASSET_JOB", list(NAMES)),  # and no run to read
    ],
)
def test_a_job_name_builds_the_models_it_can_belong_to(specs, monkeypatch, job, built):
    if job is None:
        monkeypatch.delenv("DAGSTER_RUN_JOB_NAME", raising=False)
    else:
        monkeypatch.setenv("DAGSTER_RUN_JOB_NAME", job)
    assert _names(specs) == built


def _run(instance: dg.DagsterInstance, *keys: tuple[str, ...], checks: tuple[dg.AssetCheckKey, ...] = ()) -> str:
    run = dg.DagsterRun(
        job_name="__ASSET_JOB",
        asset_selection=frozenset(dg.AssetKey(list(k)) for k in keys) or None,
        asset_check_selection=frozenset(checks) or None,
    )
    return instance.add_run(run).run_id


def _origin() -> JobPythonOrigin:
    pointer = ModuleCodePointer("ml_platform.definitions", "defs", working_directory=None)
    return JobPythonOrigin("__ASSET_JOB", RepositoryPythonOrigin(sys.executable, pointer))


@pytest.fixture
def worker(monkeypatch, instance):
    """`worker(args, how)`: this process as the implicit asset job's worker, handed `args` by `how`."""

    def become(args, how: str) -> None:
        monkeypatch.setenv("DAGSTER_RUN_JOB_NAME", "__ASSET_JOB")
        for name in ("DAGSTER_EXECUTE_RUN_ARGS", "DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS", "DAGSTER_EXECUTE_STEP_ARGS"):
            monkeypatch.delenv(name, raising=False)
        text = serialize_value(args)
        command = "execute_step" if isinstance(args, ExecuteStepArgs) else "execute_run"
        argv = {
            "argument": ["dagster", "api", command, text],
            "compressed option": [
                "dagster",
                "api",
                command,
                "--compressed-input-json",
                base64.b64encode(zlib.compress(text.encode())).decode(),
            ],
            "environment": ["dagster", "api", command],
        }[how]
        if how == "environment":
            monkeypatch.setenv(f"DAGSTER_{command.upper()}_ARGS", text)
        monkeypatch.setattr(sys, "argv", argv)

    return become


@pytest.mark.parametrize("how", ["argument", "compressed option", "environment"])
def test_the_implicit_asset_job_builds_the_models_its_run_selects(specs, instance, worker, how):
    run_id = _run(instance, ("m10", "raw"), ("m10", "features"))
    worker(ExecuteRunArgs(job_origin=_origin(), run_id=run_id, instance_ref=instance.get_ref()), how)
    assert _names(specs) == ["m10"]

    checks = (dg.AssetCheckKey(dg.AssetKey(["m1_x", "features"]), "schema"),)
    run_id = _run(instance, ("m1", "raw"), checks=checks)
    worker(
        ExecuteStepArgs(
            job_origin=_origin(), run_id=run_id, step_keys_to_execute=None, instance_ref=instance.get_ref()
        ),
        how,
    )
    assert _names(specs) == ["m1", "m1_x"]  # a step worker too, and a selected check's model


def test_a_run_it_cannot_place_builds_every_model(specs, instance, worker):
    for run_id in (
        _run(instance, ("m1", "raw"), ("elsewhere", "table")),  # an asset no model owns
        _run(instance),  # no asset selection: the whole job
        "no-such-run",
    ):
        worker(ExecuteRunArgs(job_origin=_origin(), run_id=run_id, instance_ref=instance.get_ref()), "argument")
        assert _names(specs) == list(NAMES)
    worker(ExecuteRunArgs(job_origin=_origin(), run_id="x", instance_ref=None), "argument")
    assert _names(specs) == list(NAMES)


def test_the_worker_builds_the_same_jobs_as_the_whole_location(specs, monkeypatch):
    monkeypatch.delenv("DAGSTER_RUN_JOB_NAME", raising=False)
    whole = build_definitions(specs).get_repository_def()
    monkeypatch.setenv("DAGSTER_RUN_JOB_NAME", "m10_retrain")
    alone = build_definitions(specs).get_repository_def()

    assert {key.path[0] for key in alone.asset_graph.get_all_asset_keys()} == {"m10"}
    for job in ("m10_retrain", "m10_data", "m10_deploy"):
        assert alone.get_job(job).get_job_snapshot_id() == whole.get_job(job).get_job_snapshot_id(), job
    keys = {dg.AssetKey(["m10", "raw"]), dg.AssetKey(["m10", "features"])}
    subset = [r.get_implicit_global_asset_job_def().get_subset(asset_selection=keys) for r in (alone, whole)]
    assert subset[0].get_job_snapshot().node_defs_snapshot == subset[1].get_job_snapshot().node_defs_snapshot
