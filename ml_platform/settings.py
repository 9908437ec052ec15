"""Where the platform keeps its local state: one home folder, overridable by environment variables.

Everything a run writes (Dagster's home, stored partitions, pinned replay offsets, MLflow's store) lives under
ML_PLATFORM_HOME unless an environment variable points a part of it elsewhere (object storage, a server).
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "ML_PLATFORM_HOME"
STORAGE_ENV = "ML_PLATFORM_STORAGE"
ENDPOINTS_ENV = "ML_PLATFORM_ENDPOINTS"


def home() -> Path:
    """The platform's home folder (default ./.ml_platform), created on first use."""
    path = Path(os.environ.get(HOME_ENV) or ".ml_platform").resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def storage_url() -> str:
    """Base URL or folder of stored partitions: ML_PLATFORM_STORAGE (s3://, gs://, a path) or home/storage."""
    return os.environ.get(STORAGE_ENV) or str(home() / "storage")


def endpoint_service(model: str) -> str | None:
    """The base URL of the long-lived endpoint service that serves `model`, when the deployment runs one
    (ML_PLATFORM_ENDPOINTS="model=http://host:port,other=..."): deploys then verify that service instead of
    starting a process, which a run in a short-lived container could not keep alive."""
    for pair in filter(None, (p.strip() for p in (os.environ.get(ENDPOINTS_ENV) or "").split(","))):
        name, sep, url = pair.partition("=")
        url = url.strip()
        if not sep or not name.strip() or not url.startswith(("http://", "https://")) or any(c in url for c in "=; \t"):
            raise ValueError(f"{ENDPOINTS_ENV}: {pair!r} is not model=http(s)://host:port (pairs separated by commas)")
        if name.strip() == model:
            return url.rstrip("/")
    return None
