"""The role interfaces ("ports") of the external systems radwatch drives.

Domain code depends on these protocols, never on a concrete client, so the rules about aliases,
loads and task messages are written once against an interface. Each port has exactly one real
adapter, built in one place (:mod:`services.wiring`) and handed to the API lifespan, the Celery
worker and the CLI through :class:`services.core.runtime.Runtime`:

- :class:`ModelRegistry`: MLflow (:class:`services.registry.mlflow_registry.MlflowRegistry`);
- :class:`InferenceServer`: Triton (:class:`services.serving.client.TritonClient`);
- :class:`Enqueuer`: Celery's producer (:class:`services.core.enqueue.CeleryEnqueuer`).

Tests run the real adapters against real servers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile


# --- model registry (MLflow) -------------------------------------------------------------------


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

    def ping(self) -> None:
        """Raise ``RegistryUnavailableError`` unless the registry answers."""
        ...

    def set_model_tag(self, name: str, key: str, value: str) -> None:
        """Set a tag on the registered model (not a version): change protocols live there."""
        ...

    def model_tags(self, name: str) -> dict[str, str]: ...

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None when the alias is not set."""
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


# --- inference server (Triton) -----------------------------------------------------------------


@dataclass(frozen=True)
class InferenceOutput:
    """One batch's outputs, rows in the order of the input batch.

    ``probs`` is float32 ``[B, F]`` sigmoid probabilities in the model's finding order;
    ``embeddings`` is float32 ``[B, D]``. ``model_version`` is the version the server actually
    ran (it picks one when the request names none).
    """

    probs: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32]
    model_name: str
    model_version: int


@runtime_checkable
class InferenceServer(Protocol):
    """Model control and inference; raises radwatch domain errors only.

    An unreachable server raises ``ServingUnavailableError``; a model or version that is not
    loaded raises ``ModelNotLoadedError``; a request the server rejects raises
    ``InferenceError``.
    """

    url: str

    def is_live(self) -> bool: ...

    def server_version(self) -> str: ...

    def load_model(self, name: str) -> None:
        """Load (or reload) every version of ``name`` found in the model repository."""
        ...

    def unload_model(self, name: str, *, wait_s: float = 30.0) -> None: ...

    def is_model_ready(self, name: str, version: int | None = None) -> bool: ...

    def infer(
        self, name: str, version: int | None, batch: npt.NDArray[np.float32]
    ) -> InferenceOutput: ...

    def close(self) -> None: ...


# --- task queue (Celery) -----------------------------------------------------------------------


@runtime_checkable
class Enqueuer(Protocol):
    """Publishes task messages. Best effort: returns False (and logs) when the broker refuses;
    every message radwatch sends nudges work that a beat sweep also picks up."""

    def send(
        self, task: str, args: Sequence[Any], *, queue: str, expires_s: float | None = None
    ) -> bool: ...
