"""Alerts are always logged; a webhook that is down is retried and never raises."""

from __future__ import annotations

import logging
import socket

from ml_platform.core.alerts import send_alert


def test_a_down_webhook_is_retried_then_logged(caplog):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed once the block ends: nothing listens there
    with caplog.at_level(logging.WARNING, logger="ml_platform.alerts"):
        delivered = send_alert(
            {"kind": "drift", "model": "m"}, url=f"http://127.0.0.1:{port}/hook", retries=3, backoff=0.01, timeout=1
        )
    assert delivered is False
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("ALERT ") and '"kind": "drift"' in m for m in messages)
    assert sum(m.startswith("alert webhook attempt") for m in messages) == 3
    assert any("not delivered" in m for m in messages)


def test_without_a_webhook_the_alert_is_only_logged(caplog, monkeypatch):
    monkeypatch.delenv("ML_PLATFORM_ALERT_WEBHOOK", raising=False)
    with caplog.at_level(logging.WARNING, logger="ml_platform.alerts"):
        assert send_alert({"kind": "run_failed"}) is True
    assert any("run_failed" in r.getMessage() for r in caplog.records)
