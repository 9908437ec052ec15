"""What one endpoint serves and the limits it keeps, as one plain object.

`ml-platform serve` builds it from the spec and the command line; the server's worker processes read it back
from the environment (`ML_PLATFORM_SERVE_CONFIG`), so every worker serves the same model with the same limits.
Secrets are never part of it: tokens come from the environment of each process.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ml_platform.spec.sections import ModelSpec

CONFIG_ENV = "ML_PLATFORM_SERVE_CONFIG"
TOKEN_ENV = "ML_PLATFORM_API_TOKEN"
METRICS_TOKEN_ENV = "ML_PLATFORM_METRICS_TOKEN"
# prometheus_client's multiprocess folder; it must be set before prometheus_client is first imported
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


@dataclass
class ServeConfig:
    model: str
    log_path: str
    model_dir: str | None = None  # serve this folder instead of the registry's champion
    model_version: str | None = None  # the version to report for model_dir
    max_rows: int = 1000
    reload_interval_s: float = 5.0
    rollout_mode: str = "none"  # none | shadow | canary
    canary_fraction: float = 0.1
    rollout_key: str | None = None  # a feature whose value makes canary routing sticky
    previous_window_s: float = 0.0  # score `previous` beside a champion this new (seconds since promotion)
    unknown_fields: str = "ignore"  # ignore | reject fields that are not the model's features
    cors_origins: tuple[str, ...] = ()
    # limits (the spec's serving.limits)
    max_body_bytes: int = 1_000_000
    body_timeout_s: float = 10.0
    max_in_flight: int = 64
    scoring_timeout_s: float = 10.0
    retry_after_s: float = 1.0
    compress_above_bytes: int | None = 4096  # None: answers are never compressed
    # the prediction log (the spec's serving.log)
    log_redact: tuple[str, ...] = ()
    log_retention_s: float | None = None
    log_max_bytes: int | None = None
    log_fsync: bool = True
    token: str | None = field(default_factory=lambda: _env(TOKEN_ENV), repr=False)
    metrics_token: str | None = field(default_factory=lambda: _env(METRICS_TOKEN_ENV), repr=False)

    def to_environment(self) -> str:
        """JSON for CONFIG_ENV, without the tokens (each process reads those from its own environment)."""
        values = {k: v for k, v in asdict(self).items() if k not in ("token", "metrics_token")}
        return json.dumps(values)

    @classmethod
    def from_environment(cls) -> ServeConfig:
        text = os.environ.get(CONFIG_ENV)
        if not text:
            raise RuntimeError(f"{CONFIG_ENV} is not set: start the endpoint with `ml-platform serve`")
        values = json.loads(text)
        known = {f.name for f in fields(cls)} - {"token", "metrics_token"}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in known}
        return cls(**values)


def from_spec(spec: ModelSpec, **overrides: Any) -> ServeConfig:
    """The endpoint's settings from a model spec (its `serving` and monitoring windows), then `overrides`."""
    serving, limits = spec.serving, spec.serving.limits
    values: dict[str, Any] = {
        "max_rows": serving.max_rows,
        "rollout_mode": serving.rollout.mode,
        "canary_fraction": serving.rollout.fraction,
        "rollout_key": serving.rollout.key,
        "previous_window_s": spec.monitoring.performance.rollback_window.total_seconds(),
        "unknown_fields": serving.unknown_fields,
        "cors_origins": tuple(serving.cors_origins),
        "max_body_bytes": limits.body_bytes,
        "body_timeout_s": limits.body_timeout.total_seconds(),
        "max_in_flight": limits.in_flight,
        "scoring_timeout_s": limits.scoring_timeout.total_seconds(),
        "retry_after_s": limits.retry_after.total_seconds(),
        "compress_above_bytes": limits.compress_above_bytes,
        "log_redact": tuple(serving.log.redact),
        "log_retention_s": serving.log.retention.total_seconds(),
        "log_max_bytes": serving.log.max_mb * 1024 * 1024,
        "log_fsync": serving.log.fsync,
    }
    return ServeConfig(**{**values, **overrides})
