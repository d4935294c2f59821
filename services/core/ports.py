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
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from pathlib import Path

    from pipelines.model import RadiographNet
    from pipelines.profile import ReferenceProfile
    from pipelines.spec import ModelSpec


# --- model registry (MLflow) -------------------------------------------------------------------

#: Run tag with the SHA-256 of an imported run's serving file (``serving/<file>``): what
#: :meth:`ModelRegistry.serving_sha256` reads, and what a probe pins its encoder by.
SERVING_SHA256_TAG = "radwatch.serving_sha256"


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


@dataclass(frozen=True)
class EvaluationSetInfo:
    """One version of a sequestered evaluation set: ``sha256`` (of its manifest) identifies its
    content in every dossier that uses it."""

    name: str
    version: int
    sha256: str
    studies: int
    run_id: str
    created_at: datetime


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
        spec: ModelSpec | None = ...,
    ) -> str:
        """Record a finished training run with its model, reference profile, card and spec
        (the built-in model's by default); run id."""
        ...

    def log_import(
        self,
        *,
        experiment: str,
        run_name: str,
        spec: ModelSpec,
        artifact: Path,
        model_card: str,
        params: Mapping[str, object],
        tags: Mapping[str, str] | None = ...,
    ) -> str:
        """Record an imported model (spec, serving artifact, card) as a finished run; run id."""
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

    def delete_model_tag(self, name: str, key: str) -> None:
        """Remove a registered model's tag; removing a tag that is not set is not an error."""
        ...

    def alias_version(self, name: str, alias: str) -> int | None:
        """The version ``alias`` points at, or None when the alias is not set."""
        ...

    def get_version(self, name: str, version: int) -> ModelVersionInfo: ...

    def get_by_alias(self, name: str, alias: str) -> ModelVersionInfo: ...

    def model_names(self) -> list[str]:
        """Every registered model's name, sorted."""
        ...

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

    def log_reference_profile(self, name: str, version: int, profile: ReferenceProfile) -> None:
        """Store (or replace) the version's reference profile."""
        ...

    def load_spec(self, name: str, version: int) -> ModelSpec:
        """The version's model spec (the built-in model's for versions without one)."""
        ...

    def has_trainable_model(self, name: str, version: int) -> bool:
        """Whether the version carries a trainable built-in model."""
        ...

    def download_serving_artifact(self, name: str, version: int, dest: Path) -> Path:
        """Copy an imported version's one serving file into ``dest``; its path."""
        ...

    def log_evaluation_set(
        self, name: str, folder: Path, *, sha256: str, studies: int
    ) -> EvaluationSetInfo:
        """Store a sequestered evaluation set's folder as its next version."""
        ...

    def evaluation_set_versions(self, name: str) -> list[EvaluationSetInfo]: ...

    def download_evaluation_set(
        self, name: str, version: int | None, dest: Path
    ) -> tuple[EvaluationSetInfo, Path]:
        """The set (newest version when ``version`` is None) in ``dest``: info and folder."""
        ...

    def serving_sha256(self, name: str, version: int) -> str:
        """The SHA-256 of an imported version's serving file (what a probe pins its encoder by)."""
        ...


# --- inference server (Triton) -----------------------------------------------------------------


@dataclass(frozen=True)
class InferenceOutput:
    """One batch's outputs, rows in the order of the input batch.

    ``outputs`` holds every tensor the spec declares, by tensor name, as the server returned it.
    ``probs`` is float32 ``[B, F]`` probabilities in the spec's finding order (``findings``;
    sigmoid applied to outputs declared as logits; ``[B, 0]`` for a model without findings);
    ``embeddings`` is float32 ``[B, D]`` (``[B, 0]`` without an embedding output).
    ``model_version`` is the version the server actually ran (it picks one when the request
    names none).
    """

    probs: npt.NDArray[np.float32]
    embeddings: npt.NDArray[np.float32]
    model_name: str
    model_version: int
    findings: tuple[str, ...] = ()
    outputs: Mapping[str, npt.NDArray[np.float32]] = field(default_factory=dict)

    @classmethod
    def of(
        cls,
        spec: ModelSpec,
        outputs: Mapping[str, npt.NDArray[np.float32]],
        *,
        model_name: str,
        model_version: int,
    ) -> InferenceOutput:
        """Read the spec's findings and embedding out of raw output tensors."""
        rows = len(next(iter(outputs.values()))) if outputs else 0
        probs = np.zeros((rows, 0), np.float32)
        names: tuple[str, ...] = ()
        if (f := spec.findings) is not None:
            probs = outputs[f.tensor]
            if f.activation == "logit":
                probs = (1.0 / (1.0 + np.exp(-probs.astype(np.float64)))).astype(np.float32)
            names = f.names
        emb = (
            outputs[e.tensor]
            if (e := spec.embedding) is not None
            else np.zeros((rows, 0), np.float32)
        )
        return cls(
            probs=probs,
            embeddings=emb,
            model_name=model_name,
            model_version=model_version,
            findings=names,
            outputs=dict(outputs),
        )

    def scores(self, row: int) -> dict[str, float]:
        """One row's probabilities by finding name."""
        return {f: float(p) for f, p in zip(self.findings, self.probs[row], strict=True)}


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
        self,
        name: str,
        version: int | None,
        batch: npt.NDArray[np.float32],
        *,
        spec: ModelSpec | None = None,
    ) -> InferenceOutput:
        """Every output ``spec`` declares (the built-in model's spec by default)."""
        ...

    def close(self) -> None: ...


# --- task queue (Celery) -----------------------------------------------------------------------


@runtime_checkable
class Enqueuer(Protocol):
    """Publishes task messages. Best effort: returns False (and logs) when the broker refuses;
    every message radwatch sends nudges work that a beat sweep also picks up."""

    def send(
        self, task: str, args: Sequence[Any], *, queue: str, expires_s: float | None = None
    ) -> bool: ...
