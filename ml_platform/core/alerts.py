"""Alerts: always logged, and posted as JSON to ML_PLATFORM_ALERT_WEBHOOK when it is set.

A webhook that is down never fails the pipeline: the post is retried with backoff, then the failure is logged.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

WEBHOOK_ENV = "ML_PLATFORM_ALERT_WEBHOOK"
log = logging.getLogger("ml_platform.alerts")


def send_alert(
    payload: dict[str, Any],
    url: str | None = None,
    retries: int = 3,
    timeout: float = 5.0,
    backoff: float = 0.5,
    logger: logging.Logger | None = None,
) -> bool:
    """Log the alert and post it; True when the webhook accepted it (or none is configured)."""
    logger = logger or log
    url = url if url is not None else os.environ.get(WEBHOOK_ENV)
    logger.warning("ALERT %s", json.dumps(payload, default=str, sort_keys=True))
    if not url:
        return True
    import requests  # only when a webhook is set: the sensors that alert import this module

    for attempt in range(1, retries + 1):
        try:
            response = requests.post(url, json=payload, timeout=timeout)
            if response.status_code < 300:
                return True
            problem = f"HTTP {response.status_code}"
        except requests.RequestException as error:
            problem = f"{type(error).__name__}: {error}"
        logger.warning("alert webhook attempt %d/%d failed: %s", attempt, retries, problem)
        if attempt < retries:
            time.sleep(backoff * 2 ** (attempt - 1))
    logger.error("alert not delivered to the webhook after %d attempts; it is in this log", retries)
    return False
