"""Phase timers: what a step reports of where its time went."""

from __future__ import annotations

import time

from ml_platform.core.phases import PhaseTimes


def test_phases_add_up_in_the_order_they_first_ran():
    phases = PhaseTimes()
    with phases.phase("read"):
        time.sleep(0.02)
    with phases.phase("work"):
        sum(range(200_000))
    with phases.phase("read"):
        time.sleep(0.02)
    rounded = phases.rounded()
    assert list(rounded) == ["read", "work"]
    assert rounded["read"]["s"] >= 0.04  # both visits
    assert rounded["read"]["cpu_s"] < rounded["read"]["s"]  # sleeping is waiting, not work
    assert rounded["work"]["cpu_s"] > 0


def test_a_failing_phase_is_still_counted():
    phases = PhaseTimes()
    try:
        with phases.phase("load"):
            raise ValueError("source down")
    except ValueError:
        pass
    assert "load" in phases.rounded()
