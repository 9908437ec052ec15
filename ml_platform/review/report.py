"""The review's verdict, as Markdown for a pull-request comment and as JSON for a CI job, with its exit code.

Exit codes: 0 every gate would pass (or nothing model-relevant changed), 1 a gate would fail, 2 a spec error
(printed as `ml-platform check` prints it, before any report), 3 production could not be reached.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform.review.changes import Changes, ModelChange

if TYPE_CHECKING:
    from ml_platform.review.candidate import CandidateReview

PASSED, GATE_FAILED, SPEC_ERROR, UNREACHABLE = 0, 1, 2, 3
IMPORTANCE_ROWS = 5
SLICE_ROWS = 8


@dataclass(frozen=True)
class Review:
    """Everything one review found: the changes, a candidate per model that needed one, and why a candidate is
    missing where it is (production unreachable, no stored data, …)."""

    base: str
    head: str
    changes: Changes
    candidates: dict[str, CandidateReview] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    unreachable: str | None = None  # what could not be reached, when production could not be

    @property
    def exit_code(self) -> int:
        if self.unreachable:
            return UNREACHABLE
        if any(not c.passed for c in self.candidates.values()) or self.problems:
            return GATE_FAILED
        return PASSED

    def verdict(self, change: ModelChange) -> str:
        """One line per model: what happened and what the gates would say."""
        candidate = self.candidates.get(change.name)
        if change.name in self.problems:
            return f"no verdict: {self.problems[change.name]}"
        if candidate is None:
            if change.needs_candidate and self.unreachable:
                return "not judged: production unreachable"
            if change.needs_candidate:
                return "not judged: no candidate trained (--changes-only)"
            return {"removed": "removed", "unchanged": "unchanged"}.get(change.kind, "no model change: no candidate")
        main = candidate.metrics[0] if candidate.metrics else None
        word = "would pass" if candidate.passed else "would FAIL"
        if main is None:
            return word
        if main.champion is None or main.delta is None:
            return f"{word}: {main.name} {main.candidate:.4f} (no champion yet: absolute gates only)"
        return (
            f"{word}: {main.name} {main.candidate:.4f} vs champion v{candidate.champion_version} "
            f"{main.champion:.4f} ({main.delta:+.4f})"
        )


def markdown(review: Review, plots_dir: Path | None = None) -> str:
    """The report for a pull-request comment; plots are written to `plots_dir` and linked (relative names)."""
    relevant = [m for m in review.changes.models if m.kind != "unchanged"]
    lines = [f"## ml-platform review: {_headline(review)}", "", f"Base `{review.base}` → head `{review.head}`.", ""]
    if review.unreachable:
        lines += [f"**Production could not be reached**: {review.unreachable}", ""]
    if not relevant:
        return "\n".join([*lines, "Nothing model-relevant changed: no asset is rebuilt, no candidate trained.", ""])
    lines += ["| model | change | verdict |", "|---|---|---|"]
    lines += [f"| `{m.name}` | {_summary(m)} | {review.verdict(m)} |" for m in relevant]
    for change in relevant:
        lines += ["", f"### `{change.name}`", ""]
        lines += _fields(change) + _rebuilds(change)
        candidate = review.candidates.get(change.name)
        if candidate is not None:
            lines += _candidate(change.name, candidate, plots_dir)
    return "\n".join(lines) + "\n"


def as_json(review: Review) -> dict[str, Any]:
    """The same report as data."""
    models = []
    for change in review.changes.models:
        candidate = review.candidates.get(change.name)
        models.append(
            {
                "name": change.name,
                "kind": change.kind,
                "verdict": review.verdict(change),
                "fields": [asdict(f) for f in change.fields],
                "functions": [asdict(f) for f in change.functions],
                "rebuilds": [asdict(r) for r in change.rebuilds],
                "problem": review.problems.get(change.name),
                "candidate": _candidate_json(candidate) if candidate is not None else None,
            }
        )
    return {
        "base": review.base,
        "head": review.head,
        "exit_code": review.exit_code,
        "unreachable": review.unreachable,
        "models": models,
    }


def dumps(review: Review) -> str:
    return json.dumps(as_json(review), indent=2, default=str) + "\n"


def _headline(review: Review) -> str:
    if review.unreachable:
        return "production unreachable"
    verdicts = [c.passed for c in review.candidates.values()]
    changed = sum(m.kind != "unchanged" for m in review.changes.models)
    if not changed:
        return "nothing model-relevant changed"
    parts = [f"{changed} model{'s' if changed != 1 else ''} changed"]
    if verdicts:
        parts.append(f"{sum(verdicts)} would pass, {len(verdicts) - sum(verdicts)} would fail")
    if review.problems:
        parts.append(f"{len(review.problems)} without a verdict")
    return "; ".join(parts)


def _summary(change: ModelChange) -> str:
    if change.kind != "changed":
        return change.kind
    named = [f"`{f.path}`" for f in change.fields[:3]] + [f"`{f.function}` (source)" for f in change.functions[:2]]
    more = len(change.fields) + len(change.functions) - len(named)
    return ", ".join(named) + (f" and {more} more" if more > 0 else "")


def _fields(change: ModelChange) -> list[str]:
    if not change.fields and not change.functions:
        return []
    lines = ["| field | base | head |", "|---|---|---|"]
    lines += [f"| `{f.path}` | {_value(f.old)} | {_value(f.new)} |" for f in change.fields]
    lines += [
        f"| `features.derived.{f.feature}` source (`{f.function}`) | {f.old_digest or 'not found'} | "
        f"{f.new_digest or 'not found'} |"
        for f in change.functions
    ]
    return [*lines, ""]


def _rebuilds(change: ModelChange) -> list[str]:
    if not change.rebuilds:
        return ["Nothing is rebuilt (`schedule` changes when runs start, not what they produce).", ""]
    lines = ["**What the merge rebuilds**", ""]
    lines += [f"- {', '.join(r.stages) or 'nothing'}: {r.what}" for r in change.rebuilds]
    return [*lines, ""]


def _candidate(name: str, candidate: CandidateReview, plots_dir: Path | None) -> list[str]:
    first, last = candidate.days
    against = f"champion v{candidate.champion_version}" if candidate.champion_version else "no champion yet"
    held_out = " to ".join(dict.fromkeys(candidate.test_days))
    lines = [f"**Candidate** ({against}; trained on {first} to {last}, both scored on {held_out})", ""]
    lines += ["| metric | champion | candidate | delta |", "|---|---|---|---|"]
    lines += [
        f"| {m.name} | {_number(m.champion)} | {_number(m.candidate)} | {_number(m.delta, signed=True)} |"
        for m in candidate.metrics
    ]
    lines += ["", "| gate | result | detail |", "|---|---|---|"]
    lines += [f"| {g.name} | {'pass' if g.passed else '**FAIL**'} | {g.detail} |" for g in candidate.gates]
    slices = sorted(candidate.slices, key=lambda r: -abs(r.delta or 0.0))[:SLICE_ROWS]
    if slices:
        lines += ["", "| slice (largest changes) | rows | champion | candidate | delta |", "|---|---|---|---|---|"]
        lines += [
            f"| {r.column} = {r.level} | {r.rows} | {_number(r.champion)} | {_number(r.candidate)} | "
            f"{_number(r.delta, signed=True)} |"
            for r in slices
        ]
    gap = candidate.fairness
    if gap is not None:
        lines += [
            "",
            f"Fairness across `{gap.group}` ({gap.metric}): the candidate's gap {gap.candidate:.4f} (best "
            f"{gap.best}, worst {gap.worst}); the champion's {_number(gap.champion)}.",
        ]
    moves = candidate.importance_moves[:IMPORTANCE_ROWS]
    if moves:
        lines += ["", "| feature (largest importance moves) | champion | candidate |", "|---|---|---|"]
        lines += [f"| `{m.feature}` | {_share(m.champion)} | {_share(m.candidate)} |" for m in moves]
    for note in candidate.data_notes:
        lines += ["", f"> {note}"]
    if plots_dir is not None and candidate.plots:
        plots_dir.mkdir(parents=True, exist_ok=True)
        links = []
        for plot, png in sorted(candidate.plots.items()):
            file = plots_dir / f"{name}_{plot}.png"
            file.write_bytes(png)
            links.append(f"[{plot}]({file.name})")
        lines += ["", "Plots: " + ", ".join(links)]
    return [*lines, ""]


def _candidate_json(candidate: CandidateReview) -> dict[str, Any]:
    return {
        "champion_version": candidate.champion_version,
        "days": list(candidate.days),
        "test_days": list(candidate.test_days),
        "slices": [asdict(r) for r in candidate.slices],
        "fairness": asdict(candidate.fairness) if candidate.fairness else None,
        "passed": candidate.passed,
        "metrics": [asdict(m) for m in candidate.metrics],
        "gates": [g.as_dict() for g in candidate.gates],
        "importance_moves": [asdict(m) for m in candidate.importance_moves],
        "data_notes": list(candidate.data_notes),
        "seconds": round(candidate.seconds, 2),
    }


def _value(value: Any) -> str:
    if value is None:
        return "(absent)"
    text = json.dumps(value, default=str) if isinstance(value, dict | list) else str(value)
    return f"`{text[:80]}{'…' if len(text) > 80 else ''}`"


def _number(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
