"""What the shared sensors have in common: one sensor per family serves every model of the code location, and
looks at each model in turn with the model's own cursor.

The sensor's cursor is a JSON object keyed by model name, each value the cursor the model's own sensor used to
keep (a model added later starts with none; a model removed drops out). Looking at one model returns its cursor
afterwards, one line saying why nothing ran (or what did) and its run requests, each naming the model's job. A
model whose evaluation raises is logged with its name and keeps its old cursor; the others are still looked at
and their requests still launched, and the failure is named in the tick's skip reason and, under `_failed`
(never a model name: names start with a letter), in the cursor.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import dagster as dg

from ml_platform.spec import ModelSpec

if TYPE_CHECKING:
    from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

    Job: TypeAlias = dg.JobDefinition | UnresolvedAssetJobDefinition

FAILED_KEY = "_failed"


@dataclass(frozen=True)
class Watched:
    """One model as the shared sensors see it: its spec, its data and training partitions, and its jobs by name
    (the sensors that start runs declare the very job objects the model's stages defined)."""

    spec: ModelSpec
    data: dg.TimeWindowPartitionsDefinition
    training: dg.PartitionsDefinition
    jobs: Mapping[str, Job] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        data: dg.TimeWindowPartitionsDefinition,
        training: dg.PartitionsDefinition,
        defs: dg.Definitions,
    ) -> Watched:
        """The model with the jobs its definitions declare."""
        return cls(spec, data, training, {job.name: job for job in defs.jobs or ()})

    @property
    def name(self) -> str:
        return self.spec.name

    def job(self, name: str) -> Job:
        try:
            return self.jobs[name]
        except KeyError:
            raise dg.DagsterInvalidDefinitionError(
                f"{self.name}: a shared sensor targets job {name!r}, which its definitions do not declare "
                f"(they declare {sorted(self.jobs)})"
            ) from None


@dataclass(frozen=True)
class Looked:
    """What looking at one model came to: its cursor afterwards (None: none to keep), one line saying why
    nothing ran or what was done, and the runs it requests."""

    cursor: Any
    reason: str
    requests: Sequence[dg.RunRequest] = ()


def look_at_each(
    context: dg.SensorEvaluationContext,
    models: Sequence[Watched],
    look: Callable[[Watched, Any], Looked],
) -> dg.SensorResult:
    """`look(model, its cursor)` for every model, each on its own: one that raises is logged, keeps its cursor
    and is named in the result; the others' requests are returned. The skip reason has one line per model
    (failures first)."""
    before = cursors_of(context.cursor)
    after: dict[str, Any] = {}
    failed: dict[str, str] = {}
    requests: list[dg.RunRequest] = []
    lines: list[str] = []
    for model in models:
        mine = before.get(model.name)
        try:
            looked = look(model, mine)
        except Exception as error:  # one model's failure must not stop the others
            context.log.exception(f"{model.name}: this model could not be evaluated; the other models were")
            failed[model.name] = _one_line(error)
            if mine is not None:
                after[model.name] = mine
            continue
        if looked.cursor is not None:
            after[model.name] = looked.cursor
        requests.extend(looked.requests)
        lines.append(f"{model.name}: {looked.reason}")
    if failed:
        after[FAILED_KEY] = failed
    lines = [f"{name}: FAILED ({error}); see the tick's log" for name, error in failed.items()] + lines
    cursor = json.dumps(after, sort_keys=True)
    if requests:
        context.log.info("\n".join(lines))  # the tick shows its runs; the log keeps why, per model
        return dg.SensorResult(run_requests=requests, cursor=cursor)
    return dg.SensorResult(skip_reason="\n".join(lines) or "no model to look at", cursor=cursor)


def cursors_of(cursor: str | None) -> dict[str, Any]:
    """Each model's own cursor, from a shared sensor's cursor (anything else starts every model afresh)."""
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    if not isinstance(state, dict):
        return {}
    return {name: value for name, value in state.items() if name != FAILED_KEY}


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {text[:200]}"
