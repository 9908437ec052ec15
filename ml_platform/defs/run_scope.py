"""Which models a run worker builds: only those its run touches, where the launcher says which run it is.

Every run re-imports the code location in a fresh process (the run worker, or a step worker), which would build
every model's graph of the location to run one of them. Dagster's Docker and Kubernetes launchers and executors
name the run's job in the worker's environment (`DAGSTER_RUN_JOB_NAME`) and hand it the run on its command line
(`dagster api execute_run|resume_run|execute_step ARGS`, or the same ARGS in `DAGSTER_*_ARGS`):

- a model's own job (`<model>_retrain`, `<model>_data`, …) names its model;
- the implicit asset job (`__ASSET_JOB`: the UI's Materialize, the automation sensor's runs) selects assets, and
  each asset key starts with its model's name: the run record says which.

Anything else (no such variable: a code server, `dagster dev`'s own launcher, a test) builds every model, as does
anything unexpected on the way (a job or asset no model claims, an unreadable run): a run worker may build more
than it needs, never less. Model names may prefix one another (`m` and `m_data`), so a job name keeps every model
it could belong to.
"""

from __future__ import annotations

import base64
import os
import sys
import zlib
from collections.abc import Sequence

from ml_platform.spec import ModelSpec

JOB_ENV = "DAGSTER_RUN_JOB_NAME"
IMPLICIT_JOB_PREFIX = "__ASSET_JOB"
# The worker commands of `dagster api` whose ARGS carry the run (id and instance), and their variables.
_ARGS_ENV = {
    "execute_run": ("DAGSTER_EXECUTE_RUN_ARGS", "DAGSTER_COMPRESSED_EXECUTE_RUN_ARGS"),
    "resume_run": ("DAGSTER_RESUME_RUN_ARGS", "DAGSTER_COMPRESSED_RESUME_RUN_ARGS"),
    "execute_step": ("DAGSTER_EXECUTE_STEP_ARGS", "DAGSTER_COMPRESSED_EXECUTE_STEP_ARGS"),
}


def models_of_this_run(specs: Sequence[ModelSpec]) -> list[ModelSpec]:
    """The specs this process must build: the run's models in a named run worker, else all of them."""
    job = os.environ.get(JOB_ENV)
    if not job or len(specs) <= 1:
        return list(specs)
    if job.startswith(IMPLICIT_JOB_PREFIX):
        names = _selected_models()
    else:
        names = {spec.name for spec in specs if job.startswith(f"{spec.name}_")}
    chosen = [spec for spec in specs if spec.name in names] if names else []
    return chosen if chosen and len(chosen) == len(names or ()) else list(specs)


def _selected_models() -> set[str] | None:
    """The first component of every asset (and check) the run selects; None when the run can't be read."""
    try:
        from dagster import RunsFilter
        from dagster._core.storage.runs import RunStorage
        from dagster_shared.serdes import deserialize_value

        raw = _worker_args()
        if raw is None:
            return None
        args = deserialize_value(raw)
        instance_ref, run_id = getattr(args, "instance_ref", None), getattr(args, "run_id", None)
        if instance_ref is None or not run_id:
            return None
        # The run storage alone: a whole instance costs half a second, and the worker opens its own anyway.
        storage = instance_ref.run_storage_data.rehydrate(as_type=RunStorage)
        try:
            runs = storage.get_runs(RunsFilter(run_ids=[run_id]))
        finally:
            storage.dispose()
        run = runs[0] if runs else None
        if run is None or run.asset_selection is None:
            return None
        keys = [*run.asset_selection, *(check.asset_key for check in run.asset_check_selection or ())]
        return {key.path[0] for key in keys} or None
    except Exception:  # whatever goes wrong here, building every model is correct
        return None


def _worker_args() -> str | None:
    """The serialized ARGS of this `dagster api` worker command: its argument, its `--compressed-input-json`, or
    the variables that stand for them."""
    argv = sys.argv
    for position, word in enumerate(argv[:-1]):
        if word in _ARGS_ENV and position > 0 and argv[position - 1] == "api":
            rest = argv[position + 1 :]
            if rest[0] == "--compressed-input-json" and len(rest) > 1:
                return _decompressed(rest[1])
            if not rest[0].startswith("-"):
                return rest[0]
            return _from_env(*_ARGS_ENV[word])
    return next((found for names in _ARGS_ENV.values() if (found := _from_env(*names))), None)


def _from_env(plain: str, compressed: str) -> str | None:
    if os.environ.get(plain):
        return os.environ[plain]
    if os.environ.get(compressed):
        return _decompressed(os.environ[compressed])
    return None


def _decompressed(value: str) -> str:
    return zlib.decompress(base64.b64decode(value.encode())).decode()
