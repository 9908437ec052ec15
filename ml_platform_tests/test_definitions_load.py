"""Importing the code location stays cheap: every run re-imports it, so building the definitions must not import
the libraries only some steps use (training, evaluation, plots, tuning, Dask, MLflow, pandas). Those are imported
by the steps themselves. Timings belong to the benchmarks; this guards which modules load."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ml_platform.spec import BUNDLED_SPECS

# Top-level packages the definitions never need; each costs from tens of milliseconds to over a second to import.
HEAVY = (
    "sklearn",
    "mlflow",
    "dagster_mlflow",
    "matplotlib",
    "lightgbm",
    "scipy",
    "optuna",
    "dask",
    "distributed",
    "bokeh",
    "shap",
    "pandas",
    "numpy",
    "pyarrow",
    "pandera",
    "sqlalchemy",
    "fsspec",
    "requests",
    "docker",
    "granian",
    "tabulate",
)

PROBE = f"""
import json, sys
from ml_platform.definitions import defs

repository = defs.get_repository_def()
heavy = sorted(name for name in {HEAVY!r} if name in sys.modules)
print(json.dumps({{"heavy": heavy, "jobs": len(repository.get_all_jobs()), "modules": len(sys.modules)}}))
"""


def _load_in_a_fresh_python(specs: Path, home: Path) -> dict:
    env = {**os.environ, "ML_PLATFORM_SPECS": str(specs), "ML_PLATFORM_HOME": str(home)}
    env = {k: v for k, v in env.items() if k != "ML_PLATFORM_STORAGE"}
    result = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_code_location_loads_without_the_libraries_of_the_steps(tmp_path, write_spec):
    """A few specs that between them switch on every branch of the wiring: the bundled one, a multiclass one, a
    daily files source with its new-data sensor, a Dask engine, an online rollout with approval."""
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "flight_delay.yaml").write_text((BUNDLED_SPECS / "flight_delay.yaml").read_text())
    origin = Path(__file__).parent / "specs" / "flight_origin.yaml"
    (specs / "flight_origin.yaml").write_text(origin.read_text())
    write_spec(
        specs,
        {
            "name": "daily_files",
            "source": {"kind": "files", "path": "/data/flights/{date}.csv"},
            "partitions": {"cadence": "daily", "start": "2024-01-01", "end": "2024-06-01"},
            "training.cadence": "daily",
            "serving.port": 8311,
        },
        name="daily_files.yaml",
    )
    write_spec(
        specs,
        {
            "name": "on_dask",
            "training.engine": "dask",
            "serving.port": 8312,
            "serving.rollout": {"mode": "canary", "fraction": 0.2, "key": "carrier"},
            "gates.require_approval": True,
        },
        name="on_dask.yaml",
    )

    loaded = _load_in_a_fresh_python(specs, tmp_path / "home")

    assert loaded["jobs"] > 4 * 4, loaded  # every model's jobs were built and resolved
    assert loaded["heavy"] == [], (
        f"importing ml_platform.definitions imported {', '.join(loaded['heavy'])}: a definition module imports "
        "them at module level (or through a core module it imports); import them inside the step that uses them "
        "(python -X importtime -c 'import ml_platform.definitions' shows which module pulls them in)"
    )
