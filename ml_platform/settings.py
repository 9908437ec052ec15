"""Where the platform keeps its local state: one home folder, overridable by environment variables.

Everything a run writes (Dagster's home, stored partitions, pinned replay offsets, MLflow's store) lives under
ML_PLATFORM_HOME unless an environment variable points a part of it elsewhere (object storage, a server).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ML_PLATFORM_HOME"
STORAGE_ENV = "ML_PLATFORM_STORAGE"


def home() -> Path:
    """The platform's home folder (default ./.ml_platform), created on first use."""
    path = Path(os.environ.get(HOME_ENV) or ".ml_platform").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def storage_url() -> str:
    """Base URL or folder of stored partitions: ML_PLATFORM_STORAGE (s3://, gs://, a path) or home/storage."""
    return os.environ.get(STORAGE_ENV) or str(home() / "storage")
