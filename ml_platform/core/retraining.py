"""When monitoring asks for a retrain: which new drift and live-performance evaluations failed, and whether the
cooldown since the last retrain is over.

One episode (several failing days in a row) must start one retrain per cooldown, and every failure must be
seen exactly once even though evaluations resolve out of order (a day still being evaluated, a run that died
before evaluating its checks). That bookkeeping is plain state, kept here without any orchestrator: the
retrain sensor stores it as its cursor and feeds it the check records it reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CheckRecord:
    """One evaluation of a watched check, as the cursor needs it.

    `id` grows with each evaluation; `status` is "PLANNED" (its run has not evaluated it, yet or ever),
    "FAILED" or "SUCCEEDED"; `run_finished` tells, for a planned one, whether its run is over (so it never
    will be evaluated). `source` is the caller's own record, handed back untouched with the failing ones.
    """

    id: int
    status: str
    run_finished: bool = True
    source: Any = field(default=None, compare=False, repr=False)


@dataclass
class RetrainCursor:
    """The last evaluation looked at per reason ("drift", "performance") and the time of the last retrain.

    Stored as JSON `{"last_id": {reason: id}, "last_retrain": epoch seconds}` (`last_retrain` absent until the
    first retrain), the shape the sensor has always written, so cursors of running deployments keep working.
    """

    last_id: dict[str, int] = field(default_factory=dict)
    last_retrain: float = 0.0

    @classmethod
    def from_json(cls, text: str | None) -> RetrainCursor:
        state = json.loads(text) if text else {}
        return cls(last_id={str(k): int(v) for k, v in state.get("last_id", {}).items()},
                   last_retrain=float(state.get("last_retrain", 0.0)))

    def to_json(self) -> str:
        state: dict[str, Any] = {"last_id": dict(self.last_id)}
        if self.last_retrain:
            state["last_retrain"] = self.last_retrain
        return json.dumps(state)

    def since(self, reason: str) -> int:
        """The id of the last evaluation of `reason` already looked at (0: none)."""
        return self.last_id.get(reason, 0)

    def advance(self, records: Mapping[str, Iterable[CheckRecord]]) -> list[tuple[str, CheckRecord]]:
        """The failing evaluations among those newer than the cursor, per reason in order, oldest first; the
        cursor moves past every evaluation it has resolved.

        Every resolved evaluation counts, so a passing day evaluated later cannot hide an earlier failure. A
        planned evaluation whose run is still going stops the scan of its reason: it and everything after it
        are looked at again next time. One whose run has finished will never be evaluated and is passed over.
        """
        failing = []
        for reason, candidates in records.items():
            for record in sorted((r for r in candidates if r.id > self.since(reason)), key=lambda r: r.id):
                if record.status == "PLANNED" and not record.run_finished:
                    break
                self.last_id[reason] = record.id
                if record.status == "FAILED":
                    failing.append((reason, record))
        return failing

    def due(self, now: float, cooldown_s: float) -> bool:
        """Whether a retrain may start at `now`: the cooldown since the last one is over."""
        return now - self.last_retrain >= cooldown_s

    def retrained(self, now: float) -> None:
        """Record a retrain started at `now` (the cooldown runs from here)."""
        self.last_retrain = now
