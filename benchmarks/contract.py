"""The benchmark contract, shared by every script in benchmarks/ and by `guard.py`.

A figure line is one JSON object: `figure` (its name), `value` and `unit`, the `peer` measured in the same run on
the same machine and its `peer_value`, `ratio` = value / peer_value (what `guard.py` compares: the ratio cancels
the machine's speed and load), `better` ("lower" or "higher": which way the ratio improves), the `goal` and
whether it was `met`, and any extra fields. A benchmark whose figure comes in cases (task, rows, engine) names
the case in `case`; the guard keys such a figure `NAME/CASE`.

The data is pinned: the 2013 days a benchmark measures never depend on today's date, so a figure measures the
same work every day (`REPLAY_OFFSET_WEEKS`, the replay of the 2013 calendar onto itself). Every benchmark takes
`--quick`: a smaller pinned workload that prints the same figure names.
"""

from __future__ import annotations

import argparse
import json
from typing import Any, Literal

Better = Literal["lower", "higher"]

#: The replay offset every benchmark's spec pins (`source.offset_weeks`): 0 keeps the 2013 calendar itself.
REPLAY_OFFSET_WEEKS = 0


def emit(**fields: Any) -> None:
    """One JSON line (steps and details beside the figures)."""
    print(json.dumps(fields), flush=True)


def figure(
    name: str,
    *,
    value: float,
    unit: str,
    peer: str,
    peer_value: float,
    better: Better,
    goal: float | str | None,
    met: bool | None = None,
    case: str | None = None,
    guarded: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """Print and return one figure line. `met` defaults to the ratio against `goal` in the `better` direction;
    a goal on something else (the value itself, a gap) passes `met` computed by the caller. `guarded=False`
    marks a figure `guard.py` must not compare (a difference whose ratio sits near zero, where 2x is noise)."""
    ratio = value / peer_value if peer_value else float("inf")
    if met is None and isinstance(goal, int | float):
        met = ratio <= goal if better == "lower" else ratio >= goal
    line: dict[str, Any] = {
        "figure": name,
        **({"case": case} if case is not None else {}),
        "value": _rounded(value),
        "unit": unit,
        "peer": peer,
        "peer_value": _rounded(peer_value),
        "ratio": _rounded(ratio),
        "better": better,
        "goal": goal,
        "met": None if met is None else bool(met),
        **({} if guarded else {"guard": False}),
        **extra,
    }
    print(json.dumps(line), flush=True)
    return line


def _rounded(number: float) -> float:
    """Four significant digits: enough for a 2x guard, short to read."""
    return float(f"{number:.4g}")


def quick_option(parser: argparse.ArgumentParser, what: str) -> None:
    """`--quick`: the smaller pinned workload the guard runs (what it is, in the help)."""
    parser.add_argument("--quick", action="store_true", help=f"the guard's quick form: {what}")
