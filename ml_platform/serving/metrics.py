"""The endpoint's Prometheus metrics, one set for all its worker processes.

With several workers each process counts in its own files under PROMETHEUS_MULTIPROC_DIR (prometheus_client's
multiprocess mode, set by `ml-platform serve`), and a scrape of any worker adds them up; a worker that dies
keeps its counts. Without that variable (one process) the counters live in memory.
"""

from __future__ import annotations

import os
from functools import lru_cache

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector

from ml_platform.serving.config import MULTIPROC_ENV

CONTENT_TYPE = CONTENT_TYPE_LATEST.encode()
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("ml_platform_requests", "HTTP requests", ["route", "code"], registry=self.registry)
        self.errors = Counter("ml_platform_errors", "Failed requests by kind", ["kind"], registry=self.registry)
        self.predictions = Counter(
            "ml_platform_predictions", "Rows scored", ["version", "role"], registry=self.registry
        )
        self.latency = Histogram(
            "ml_platform_request_latency_seconds",
            "Predict latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "ml_platform_in_flight_requests",
            "Predict requests being worked on",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        # labelled children, looked up once per label values (labels() costs more than the increment)
        self.request = lru_cache(maxsize=512)(self.requests.labels)
        self.error = lru_cache(maxsize=64)(self.errors.labels)
        self.predicted = lru_cache(maxsize=64)(self.predictions.labels)
        self.latency_of = lru_cache(maxsize=16)(self.latency.labels)

    def exposition(self) -> bytes:
        """The Prometheus text of every worker (multiprocess mode) or of this process."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # prometheus_client leaves its __init__ unannotated
            return generate_latest(registry)
        return generate_latest(self.registry)
