"""A logged prediction traced to what made its model: the version that answered, the aliases it held at that
moment (the registry's audit history replayed up to the request's time), its MLflow training run and
experiment, the training window and each day's data version, the spec digest, the git commit, the derived
functions' digests, the Dagster run that trained it and the model file's digest.

Read-only: one client of the store once it has answered (`production.read_only_client`); nothing is written.
What cannot be read (the store, a deleted version or run, a link never recorded) is named in `missing`, and
the trace still carries what the prediction log knows.

The alias history: `Registry.register` points `challenger` at each new version (its creation time), and each
audited move (`audit.<time>.<action>` on the registered model) moves the aliases as `Registry` moved them:
`promote` (old champion → `previous`, the version → `champion`, its `challenger` removed), `rollback`
(`champion` ↔ `previous`), `retire-challenger`; the other records (`gate-failed`, `awaiting-approval`,
`online-trial`, `promote-noop`) moved nothing.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ml_platform.core.mlflow_store import CHALLENGER, CHAMPION, DATA_VERSIONS, PREVIOUS
from ml_platform.core.production import ProductionUnreachable, first_line, read_only_client
from ml_platform.core.recipe import DERIVED_TAG, DIRTY_TAG, GIT_COMMIT_TAG, RESOLVED_SPEC, SOURCE_NOTE_TAG
from ml_platform.core.registry import AUDIT_PREFIX, AUDIT_TIME

if TYPE_CHECKING:
    from mlflow import MlflowClient

REGISTERED = "registered"  # a version's creation: `Registry.register` makes it the challenger
DAGSTER_RUN_TAG = "dagster_run_id"  # on the version (the model step) and on its run (dagster-mlflow's convention)
_DERIVED_PREFIX, _DERIVED_SUFFIX = DERIVED_TAG.split("{name}")


@dataclass(frozen=True)
class LoggedRequest:
    """One prediction log entry: what the endpoint knew when it answered."""

    request_id: str
    at: datetime  # when the request arrived, UTC
    model: str
    version: str  # the version that answered
    rows: int
    routed: str  # champion, canary
    shadow_version: str | None  # the version scored beside the answer, if any
    latency_ms: float
    log: str  # the log file it was found in


@dataclass
class VersionLinks:
    """What the registry and the training run hold about a registered version; None: not recorded."""

    model: str
    version: str
    run_id: str | None = None
    experiment_id: str | None = None
    experiment: str | None = None
    dagster_run_id: str | None = None
    window: str | None = None  # "first day → last day"
    partition: str | None = None
    window_days: str | None = None
    data_versions_digest: str | None = None
    data_versions: dict[str, str] = field(default_factory=dict)  # day → data version
    spec_digest: str | None = None
    spec_artifact: str | None = None  # the resolved spec, `runs:/<run>/spec.yaml`
    commit: str | None = None
    dirty: bool | None = None
    source_note: str | None = None  # why no commit was recorded (no git where it trained)
    derived: dict[str, str] = field(default_factory=dict)  # derived feature → its function's source digest
    model_sha256: str | None = None
    missing: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AliasEvent:
    """A move of the registry's aliases: a version registered, or an audited action."""

    at: datetime
    action: str
    version: str | None
    from_version: str | None = None


@dataclass
class Trace:
    """A logged request's chain. `missing`: what could not be read or was never recorded (exit status 1)."""

    request: LoggedRequest
    entries: int = 1  # log entries under this request id (one, unless an id was reused)
    aliases: list[str] = field(default_factory=list)  # the aliases on the answering version at the request's time
    champion: str | None = None  # the champion at the request's time
    links: VersionLinks | None = None
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.missing else 0

    def as_dict(self) -> dict[str, Any]:
        request = asdict(self.request)
        request["time"] = request.pop("at").isoformat()
        links = asdict(self.links) if self.links else {}
        for key in ("model", "version", "missing"):
            links.pop(key, None)
        return {
            **request,
            "entries": self.entries,
            "aliases": self.aliases,
            "champion": self.champion,
            **links,
            "missing": self.missing,
            "notes": self.notes,
            "exit_code": self.exit_code,
        }


def trace(request: LoggedRequest, tracking_uri: str, registry_uri: str, entries: int = 1) -> Trace:
    """The chain of a logged request, from the store at `tracking_uri` / `registry_uri`."""
    result = Trace(request, entries)
    try:
        client = read_only_client(tracking_uri, registry_uri, request.model)
    except ProductionUnreachable as error:
        result.missing.append(f"{error}; the chain beyond the prediction log is unknown")
        return result
    try:
        events, current = alias_events(client, request.model)
    except Exception as error:  # whatever the store's failure, the rest of the chain may still be read
        result.missing.append(f"the alias history of {request.model} cannot be read: {first_line(error)}")
    else:
        _aliases_then(result, events, current)
    result.links = version_links(client, request.model, request.version)
    result.missing += result.links.missing
    return result


def _aliases_then(result: Trace, events: list[AliasEvent], current: dict[str, str]) -> None:
    """The aliases at the request's time, and what the history cannot vouch for."""
    request = result.request
    then = aliases_at(events, request.at)
    result.champion = then.get(CHAMPION)
    result.aliases = sorted(alias for alias, version in then.items() if version == request.version)
    if not any(event.action != REGISTERED and event.at <= request.at for event in events):
        result.notes.append("no audit record before the request: the champion at that time is unknown")
    replayed = aliases_at(events, datetime.now(UTC))
    if replayed != current:
        result.notes.append(
            f"the audit history replays to aliases {replayed}, the registry holds {current}: aliases were moved "
            "outside the platform, so the aliases at the request's time may differ"
        )
    if request.routed == CHAMPION and result.champion not in (None, request.version):
        result.notes.append(
            f"answered as champion while the registry's champion was v{result.champion}: the endpoint had not "
            "reloaded yet (it checks the alias every few seconds)"
        )


def alias_events(client: MlflowClient, name: str) -> tuple[list[AliasEvent], dict[str, str]]:
    """Every alias move of the registered model, oldest first, and its aliases now."""
    model = client.get_registered_model(name)
    events = [
        AliasEvent(audit_time(key), record["action"], _text(record.get("version")), _text(record.get("from_version")))
        for key, record in ((k, json.loads(v)) for k, v in (model.tags or {}).items() if k.startswith(AUDIT_PREFIX))
    ]
    events += [
        AliasEvent(datetime.fromtimestamp(v.creation_timestamp / 1000, UTC), REGISTERED, str(v.version))
        for v in client.search_model_versions(f"name = '{name}'")
    ]
    events.sort(key=lambda event: (event.at, event.action != REGISTERED))
    return events, {alias: str(version) for alias, version in (model.aliases or {}).items()}


def audit_time(key: str) -> datetime:
    """The time in an audit tag's key (`audit.<%Y%m%dT%H%M%S.%f>.<action>`, UTC): finer than the record's `at`."""
    stamp = ".".join(key.removeprefix(AUDIT_PREFIX).split(".")[:2])
    return datetime.strptime(stamp, AUDIT_TIME).replace(tzinfo=UTC)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def aliases_at(events: list[AliasEvent], moment: datetime) -> dict[str, str]:
    """The aliases (alias → version) after the events up to `moment`, moved as `Registry` moves them."""
    aliases: dict[str, str] = {}
    for event in events:
        if event.at > moment:
            break
        version, old = event.version, event.from_version
        if version is None:
            continue
        if event.action == REGISTERED:
            aliases[CHALLENGER] = version
        elif event.action in ("promote", "rollback"):
            if old is not None and old != version:
                aliases[PREVIOUS] = old
            aliases[CHAMPION] = version
            if event.action == "promote" and aliases.get(CHALLENGER) == version:
                del aliases[CHALLENGER]
        elif event.action == "retire-challenger" and aliases.get(CHALLENGER) == version:
            del aliases[CHALLENGER]
    return aliases


def version_links(client: MlflowClient, name: str, version: str, data_versions: bool = True) -> VersionLinks:
    """What the registry and the version's training run hold about it (with `data_versions`, each day's data
    version too: one artifact download); what cannot be read or was not recorded is in `missing`."""
    links = VersionLinks(name, version)
    try:
        registered = client.get_model_version(name, version)
    except Exception as error:  # deleted, never registered ("local"), or the registry failed
        links.missing.append(f"{name} v{version} cannot be read from the registry: {first_line(error)}")
        return links
    tags = dict(registered.tags or {})
    links.run_id = registered.run_id
    if not links.run_id:
        links.missing.append(f"{name} v{version} names no training run")
        return links
    try:
        run = client.get_run(links.run_id)
    except Exception as error:
        links.missing.append(f"the training run {links.run_id} cannot be read: {first_line(error)}")
        return links
    _from_run(links, tags, run.data.tags, run.data.params)
    links.experiment_id = run.info.experiment_id
    try:
        links.experiment = client.get_experiment(links.experiment_id).name
    except Exception as error:
        links.missing.append(f"experiment {links.experiment_id} cannot be read: {first_line(error)}")
    if data_versions:
        _artifacts(client, links)
    return links


def _from_run(links: VersionLinks, version_tags: dict[str, str], tags: dict[str, str], params: dict[str, str]) -> None:
    """The links the version's tags and its run's tags and params record (the version's tags first)."""
    recorded = {**tags, **version_tags}
    links.dagster_run_id = recorded.get(DAGSTER_RUN_TAG)
    links.window = tags.get("window")
    links.partition = version_tags.get("partition") or params.get("partition")
    links.window_days = params.get("window_days")
    links.data_versions_digest = recorded.get("data_versions_digest")
    links.spec_digest = recorded.get("spec_digest")
    links.model_sha256 = version_tags.get("model_sha256")
    links.commit, links.source_note = tags.get(GIT_COMMIT_TAG), tags.get(SOURCE_NOTE_TAG)
    links.dirty = {"true": True, "false": False}.get(tags.get(DIRTY_TAG, ""))
    links.derived = {
        key.removeprefix(_DERIVED_PREFIX).removesuffix(_DERIVED_SUFFIX): value
        for key, value in sorted(tags.items())
        if key.startswith(_DERIVED_PREFIX) and key.endswith(_DERIVED_SUFFIX)
    }
    for what, value in (
        (f"the Dagster run id (tag {DAGSTER_RUN_TAG})", links.dagster_run_id),
        ("the training window (run tag window)", links.window),
        ("the data versions digest (tag data_versions_digest)", links.data_versions_digest),
        ("the spec digest (tag spec_digest)", links.spec_digest),
        (f"the git commit (tag {GIT_COMMIT_TAG}, or {SOURCE_NOTE_TAG})", links.commit or links.source_note),
    ):
        if not value:
            links.missing.append(f"{what} is not recorded on {links.model} v{links.version}")


def _artifacts(client: MlflowClient, links: VersionLinks) -> None:
    """The run's per-day data versions, and where its resolved spec is."""
    run_id = links.run_id
    assert run_id is not None
    try:
        names = {artifact.path for artifact in client.list_artifacts(run_id)}
        if RESOLVED_SPEC in names:
            links.spec_artifact = f"runs:/{run_id}/{RESOLVED_SPEC}"
        if DATA_VERSIONS not in names:
            links.missing.append(f"the training run {run_id} has no {DATA_VERSIONS} artifact")
            return
        with tempfile.TemporaryDirectory(prefix="ml_platform_trace_") as scratch:
            path = client.download_artifacts(run_id, DATA_VERSIONS, scratch)
            links.data_versions = {str(k): str(v) for k, v in json.loads(Path(path).read_text()).items()}
    except Exception as error:
        links.missing.append(f"the artifacts of run {run_id} cannot be read: {first_line(error)}")
