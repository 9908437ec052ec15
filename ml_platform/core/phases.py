"""Seconds spent in each named phase of a piece of work, measured where the work happens.

A step records its phases (source read, validation, features, ...) and reports them as metadata, so a slow run
says where its time went without a profiler, and a benchmark reads the same figures from the run's events.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class PhaseTimes:
    """Wall-clock and CPU seconds per phase (CPU: this process, all its threads); a phase entered twice adds up.
    On a busy machine the wall clock mostly measures waiting, the CPU seconds the work itself."""

    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
            self.cpu_seconds[name] = self.cpu_seconds.get(name, 0.0) + time.process_time() - cpu_started

    def rounded(self, digits: int = 3) -> dict[str, dict[str, float]]:
        """The phases in the order they first ran, rounded for metadata and reports: `{"s": ..., "cpu_s": ...}`."""
        return {
            name: {"s": round(value, digits), "cpu_s": round(self.cpu_seconds[name], digits)}
            for name, value in self.seconds.items()
        }
