"""The model registry role: what radwatch needs from a registry, whatever backs it.

Lifecycle services (deploy, retrain, promote, roll back) depend on :class:`ModelRegistry`, not on
MLflow, so the rules about aliases and versions are written once against this interface. The one
real adapter is :class:`services.registry.mlflow_registry.MlflowRegistry`; tests run it against a
real MLflow server and against the embedded SQLite store.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile


@dataclass(frozen=True)
class ModelVersionInfo:
    """One registered version. ``created_at`` is timezone-aware UTC.

    ``aliases`` are the registry aliases (e.g. ``champion``, ``candidate``) pointing at this
    version now, sorted; ``run_id`` is the training run whose artifacts the version serves.
    """

    name: str
    version: int
    run_id: str
    aliases: tuple[str, ...]
    created_at: datetime
    description: str


@runtime_checkable
class ModelRegistry(Protocol):
    """Training runs, registered versions and aliases; raises radwatch domain errors only.

    Unknown names, versions, runs or aliases raise ``UnknownModelError``; a registry that cannot
    be reached raises ``RegistryUnavailableError`` within seconds, not minutes.
    """

    def log_training(
        self,
        *,
        experiment: str,
        run_name: str,
        params: Mapping[str, object],
        metrics: Mapping[str, float],
        model: RadiographNet,
        profile: ReferenceProfile,
        model_card: str,
        tags: Mapping[str, str] = ...,
    ) -> str:
        """Record a finished training run with its model, reference profile and card; run id."""
        ...

    def register(self, name: str, run_id: str, *, description: str = "") -> int:
        """Register the run's model as a new version of ``name`` (created if needed)."""
        ...

    def set_alias(self, name: str, alias: str, version: int) -> None:
        """Point ``alias`` at ``version``, moving it from any other version."""
        ...

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove ``alias`` from ``name``; removing an alias that is not set is not an error."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersionInfo: ...

    def get_by_alias(self, name: str, alias: str) -> ModelVersionInfo: ...

    def list_versions(self, name: str) -> list[ModelVersionInfo]:
        """All versions of ``name``, oldest (lowest version) first."""
        ...

    def run_params(self, run_id: str) -> dict[str, str]:
        """The parameters a training run recorded (values as strings)."""
        ...

    def run_tags(self, run_id: str) -> dict[str, str]:
        """The tags of a run (lineage tags are ``radwatch.*``)."""
        ...

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Attach a text artifact to a (possibly finished) run."""
        ...

    def read_text(self, run_id: str, artifact_file: str) -> str:
        """The text of one artifact of a run."""
        ...

    def load_model(self, name: str, version: int) -> RadiographNet:
        """The version's trainable model, in eval mode on the CPU."""
        ...

    def load_reference_profile(self, name: str, version: int) -> ReferenceProfile:
        """The reference profile logged with the version's training run."""
        ...
