"""The MLflow model registry, the platform's way: aliases (`champion`, `previous`, `challenger`), never stages.

Every alias move writes an audit record: a JSON tag on the registered model (`audit.<time>.<action>`) and tags
on the versions involved, so "who moved what, when and why" is answered from MLflow alone. Aliases move in an
order that never leaves the model without a champion: `previous` first, then `champion`.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from ml_platform.core import mlflow_store
from ml_platform.core.mlflow_store import CHALLENGER, CHAMPION, GATES_TAG, PREVIOUS

if TYPE_CHECKING:
    from ml_platform.core.model import Model


AUDIT_PREFIX = "audit."  # a registered model's audit tags: `audit.<AUDIT_TIME>.<action>`, UTC
AUDIT_TIME = "%Y%m%dT%H%M%S.%f"


class RegistryError(RuntimeError):
    """A registry operation is not possible (nothing to roll back to, an unknown version...)."""


@dataclass
class Registry:
    client: MlflowClient
    name: str

    def ensure_model(self, description: str = "") -> None:
        try:
            self.client.get_registered_model(self.name)
        except MlflowException:
            with contextlib.suppress(MlflowException):  # created concurrently
                self.client.create_registered_model(self.name, description=description)

    def version_of(self, alias: str) -> str | None:
        return mlflow_store.version_of_alias(self.client, self.name, alias)

    def model(self, version: str) -> Model:
        """The platform `Model` of a version (its training run's model files), e.g. the champion to compare with."""
        return mlflow_store.load_version(self.client, self.name, version)

    def aliases(self) -> dict[str, str]:
        try:
            model = self.client.get_registered_model(self.name)
        except MlflowException:  # nothing registered yet
            return {}
        return {alias: str(version) for alias, version in (model.aliases or {}).items()}

    def register(self, model_uri: str, run_id: str, tags: dict[str, str], description: str = "") -> str:
        """A new version of the registered model, marked `challenger`."""
        import mlflow

        self.ensure_model(description)
        version = mlflow.register_model(model_uri, self.name, tags={k: str(v) for k, v in tags.items()})
        self.client.set_registered_model_alias(self.name, CHALLENGER, version.version)
        return str(version.version)

    def promote(self, version: str, reason: str, details: dict[str, Any]) -> dict[str, Any]:
        """`champion` moves to `version`; the old champion keeps `previous`."""
        self._require(version)
        old = self.version_of(CHAMPION)
        if old == version:
            return self._audit("promote-noop", version, old, reason, details)
        record = self._stamped("promote", version, old, reason, details)
        if old is not None:
            self.client.set_registered_model_alias(self.name, PREVIOUS, old)
        self.client.set_registered_model_alias(self.name, CHAMPION, version)
        if self.version_of(CHALLENGER) == version:
            self.client.delete_registered_model_alias(self.name, CHALLENGER)
        return self._logged(record)

    def mark_gates(self, version: str, passed: bool) -> None:
        """Say on the version whether it passed its offline gates: only then may live traffic reach it."""
        self.client.set_model_version_tag(self.name, version, GATES_TAG, "passed" if passed else "failed")

    def gates_of(self, version: str) -> dict[str, str]:
        """The offline gate results recorded on the version's training run (`gate.<name>` tags)."""
        self._require(version)
        run_id = mlflow_store.run_of(self.client, self.name, version)
        tags = self.client.get_run(run_id).data.tags if run_id else {}
        return {k.removeprefix("gate."): v for k, v in tags.items() if k.startswith("gate.")}

    def promote_gated(self, version: str, reason: str, details: dict[str, Any]) -> dict[str, Any]:
        """`promote`, only for a version that passed every offline gate: approvals and online wins alike."""
        gates = self.gates_of(version)
        if not gates or any(v != "passed" for v in gates.values()):
            raise RegistryError(f"{self.name} v{version} cannot be promoted: its gates are {gates or 'not run'}")
        return self.promote(version, reason, {**details, "gates": gates})

    def retire_challenger(self, reason: str, details: dict[str, Any]) -> dict[str, Any]:
        """The `challenger` alias is removed (the version stays registered), audited."""
        version = self.version_of(CHALLENGER)
        if version is None:
            raise RegistryError(f"{self.name} has no challenger to retire")
        self.client.delete_registered_model_alias(self.name, CHALLENGER)
        return self._audit("retire-challenger", version, self.version_of(CHAMPION), reason, details)

    def rollback(self, reason: str, details: dict[str, Any]) -> dict[str, Any]:
        """`champion` goes back to `previous`; the two swap, so a second rollback undoes the first."""
        previous, current = self.version_of(PREVIOUS), self.version_of(CHAMPION)
        if previous is None:
            raise RegistryError(f"{self.name}: no 'previous' version to roll back to (champion is {current})")
        record = self._stamped("rollback", previous, current, reason, details)
        self.client.set_registered_model_alias(self.name, CHAMPION, previous)
        if current is not None:
            self.client.set_registered_model_alias(self.name, PREVIOUS, current)
        return self._logged(record)

    def record(self, action: str, version: str | None, reason: str, details: dict[str, Any]) -> dict[str, Any]:
        """An audit record for a decision that moved nothing (a failed gate, waiting for approval)."""
        return self._audit(action, version, self.version_of(CHAMPION), reason, details)

    def history(self) -> list[dict[str, Any]]:
        """Every audit record, oldest first (none before the first version is registered)."""
        try:
            tags = self.client.get_registered_model(self.name).tags or {}
        except MlflowException:
            return []
        return [json.loads(v) for k, v in sorted(tags.items()) if k.startswith(AUDIT_PREFIX)]

    def _require(self, version: str) -> None:
        try:
            self.client.get_model_version(self.name, version)
        except MlflowException:
            raise RegistryError(f"{self.name} has no version {version}") from None

    def _audit(
        self, action: str, version: str | None, from_version: str | None, reason: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        return self._logged(self._stamped(action, version, from_version, reason, details))

    def _stamped(
        self, action: str, version: str | None, from_version: str | None, reason: str, details: dict[str, Any]
    ) -> dict[str, Any]:
        """The audit record of a decision, its time already on the version (`last_<action>`). A move stamps the
        version before any alias moves: whoever sees the new champion also sees when it was promoted (an endpoint
        scores the previous champion beside a new one from its first request)."""
        record = {
            "action": action,
            "version": version,
            "from_version": from_version,
            "reason": reason,
            "at": datetime.now(UTC).isoformat(timespec="seconds"),
            **details,
        }
        if version is not None:
            self.client.set_model_version_tag(self.name, version, f"last_{action}", record["at"])
        return record

    def _logged(self, record: dict[str, Any]) -> dict[str, Any]:
        """The record written on the registered model (`audit.<time>.<action>`), once the decision is made."""
        text = json.dumps(record, default=str)
        if len(text) > 4900:  # MLflow tag values are bounded; keep the decision, trim the details
            record = {k: record[k] for k in ("action", "version", "from_version", "reason", "at")}
            text = json.dumps(record)
        key = f"{AUDIT_PREFIX}{datetime.now(UTC).strftime(AUDIT_TIME)}.{record['action']}"
        self.client.set_registered_model_tag(self.name, key, text)
        return record
