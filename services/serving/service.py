"""Deployments: record which model version is the champion, and look it up for predictions."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session

from pipelines.export_triton import export_model, export_version
from pipelines.model import builtin_spec
from pipelines.probes import Probe, apply
from pipelines.spec import ModelSpec, parse_spec
from services.audit import actions
from services.audit import service as audit
from services.core.errors import (
    ConflictError,
    ModelNotLoadedError,
    UnknownModelError,
    pipeline_errors,
)
from services.core.models import Deployment, DeploymentRole, ModelRouting, RoutingMode
from services.core.ports import InferenceOutput, InferenceServer, ModelRegistry
from services.serving import repository


def champion(session: Session, model_name: str) -> Deployment:
    deployment = repository.active(session, model_name)
    if deployment is None:
        known = repository.model_names(session)
        hint = f"Known models: {', '.join(known)}." if known else "No model is deployed yet."
        raise UnknownModelError(
            f"No deployed model named '{model_name}'. {hint} Deploy one with `radwatch deploy`."
        )
    return deployment


#: Parsed specs by sha256: the gateway asks for a deployment's spec on every request.
_SPECS: dict[str, ModelSpec] = {}


def spec_of(deployment: Deployment) -> ModelSpec:
    """The spec a deployment serves (the built-in model's for rows made before specs), parsed
    once per process per spec digest."""
    if deployment.spec is None or deployment.spec_sha256 is None:
        return builtin_spec()
    spec = _SPECS.get(deployment.spec_sha256)
    if spec is None:
        spec = _SPECS[deployment.spec_sha256] = parse_spec(json.dumps(deployment.spec))
    return spec


def _set_spec(deployment: Deployment, spec: ModelSpec | None) -> None:
    if spec is None:
        return
    deployment.spec = json.loads(spec.to_json())
    deployment.spec_sha256 = spec.sha256()
    deployment.embedding_dim = spec.embedding.width if spec.embedding is not None else None


def deploy_champion(
    session: Session,
    *,
    model_name: str,
    model_version: int,
    mlflow_run_id: str,
    triton_model: str,
    operating_threshold: float = 0.5,
    embedding_dim: int | None = None,
    spec: ModelSpec | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> Deployment:
    """Make ``model_version`` the active champion, retiring the previous one, and append a
    ``model.deployed`` audit record by ``actor`` in the same transaction.

    ``embedding_dim`` is the length of the embeddings its events carry (checked at ingestion);
    a ``spec`` sets it from the spec's embedding output.
    """
    previous = repository.active(session, model_name)
    previous_version = previous.model_version if previous is not None else None
    if previous is not None and previous.model_version != model_version:
        previous.active = False
    deployment = repository.by_version(session, model_name, model_version)
    if deployment is not None:
        deployment.active = True
        deployment.role = DeploymentRole.CHAMPION
        deployment.triton_model = triton_model
        deployment.operating_threshold = operating_threshold
        if embedding_dim is not None:
            deployment.embedding_dim = embedding_dim
    else:
        deployment = repository.add(
            session,
            Deployment(
                model_name=model_name,
                model_version=model_version,
                mlflow_run_id=mlflow_run_id,
                triton_model=triton_model,
                role=DeploymentRole.CHAMPION,
                active=True,
                operating_threshold=operating_threshold,
                embedding_dim=embedding_dim,
            ),
        )
    _set_spec(deployment, spec)
    audit.record(
        session,
        actor=actor,
        action=actions.MODEL_DEPLOYED,
        entity_type=actions.MODEL_VERSION,
        entity_id=actions.model_version_id(model_name, model_version),
        payload={
            "model": model_name,
            "version": model_version,
            "previous_version": previous_version,
            "role": "champion",
            "mlflow_run_id": deployment.mlflow_run_id,
            "triton_model": triton_model,
            "operating_threshold": operating_threshold,
            "deployment_id": deployment.id,
            "spec_sha256": deployment.spec_sha256,
        },
    )
    return deployment


def register_candidate(session: Session, champ: Deployment, version: int, run_id: str) -> None:
    """Record ``version`` as the active candidate next to ``champ`` (settings copied from the
    champion); a version that is the active champion already is left alone."""
    row = repository.by_version(session, champ.model_name, version)
    if row is None:
        repository.add(
            session,
            Deployment(
                model_name=champ.model_name,
                model_version=version,
                mlflow_run_id=run_id,
                triton_model=champ.triton_model,
                role=DeploymentRole.CANDIDATE,
                active=True,
                operating_threshold=champ.operating_threshold,
                embedding_dim=champ.embedding_dim,
                spec=champ.spec,
                spec_sha256=champ.spec_sha256,
            ),
        )
    elif not (row.role == DeploymentRole.CHAMPION and row.active):
        row.role, row.active = DeploymentRole.CANDIDATE, True


def locked_routing(session: Session, model_name: str) -> ModelRouting:
    """The model's routing row, locked until the transaction ends (concurrent promotion steps of
    one model queue here); created from the current champion the first time."""
    row = repository.routing(session, model_name, for_update=True)
    if row is None:
        champ = champion(session, model_name)
        row = repository.add_routing(
            session,
            ModelRouting(
                model_name=model_name,
                champion_version=champ.model_version,
                mode=RoutingMode.CHAMPION,
            ),
        )
    return row


def switch_routing(row: ModelRouting, **changes: object) -> None:
    """Change the routing row and its generation in one go (one UPDATE at flush), so a request
    never sees half a change."""
    for key, value in changes.items():
        setattr(row, key, value)
    row.generation += 1
    row.updated_at = datetime.now(UTC)


def retire_candidate(session: Session, model_name: str, version: int) -> None:
    """An aborted candidate stops being an active deployment (a champion is never retired)."""
    row = repository.by_version(session, model_name, version)
    if row is not None and row.role == DeploymentRole.CANDIDATE:
        row.active = False


def list_deployments(session: Session) -> list[Deployment]:
    return repository.list_all(session)


def served_by(spec: ModelSpec, model_name: str, version: int) -> tuple[str, int]:
    """The Triton model and version that run ``model_name`` ``version``: itself, or for a probe
    its encoder (the probe's heads run in the gateway, on the embedding Triton returns)."""
    if spec.encoder is not None:
        return spec.encoder.name, spec.encoder.version
    return model_name, version


def _check_encoder(registry: ModelRegistry, spec: ModelSpec) -> None:
    """Refuse (409) to serve a probe on an encoder whose serving file is not the one it was
    fitted on: heads fitted on one embedding space mean nothing in another."""
    assert spec.encoder is not None
    got = registry.serving_sha256(spec.encoder.name, spec.encoder.version)
    if got != spec.encoder.sha256:
        raise ConflictError(
            f"Encoder {spec.encoder.name} version {spec.encoder.version} in the registry has "
            f"serving sha256 {got[:12]}…, but the probe was fitted on {spec.encoder.sha256[:12]}…;"
            " fit the probe again on the registered encoder (`radwatch probes fit`)."
        )


def _export(
    registry: ModelRegistry,
    repository_dir: Path,
    model_name: str,
    version: int,
    spec: ModelSpec | None = None,
) -> ModelSpec:
    """Write ``version`` into the Triton repository the way its spec says (idempotent for
    identical bytes); its spec. The built-in model is exported from its trainable weights, an
    imported one from its serving artifact."""
    spec = spec or registry.load_spec(model_name, version)
    if registry.has_trainable_model(model_name, version):
        model = registry.load_model(model_name, version)
        with pipeline_errors():
            export_model(model, repository_dir, model_name, version)
        return spec
    with tempfile.TemporaryDirectory(prefix="radwatch-export-") as tmp:
        artifact = registry.download_serving_artifact(model_name, version, Path(tmp))
        with pipeline_errors():
            export_version(spec, artifact, repository_dir, model_name, version)
    return spec


def warm_batch(spec: ModelSpec) -> npt.NDArray[np.float32]:
    """A one-image zero batch of the spec's input shape (dynamic dims at their minimum)."""
    assert spec.input is not None, "a probe is not served by Triton"
    dims = [d if isinstance(d, int) else spec.input.dynamic[d].min for d in spec.input.shape]
    return np.zeros((1, *dims), np.float32)


def make_ready(
    triton: InferenceServer,
    registry: ModelRegistry,
    repository_dir: Path,
    model_name: str,
    version: int,
    *,
    warm: bool = True,
) -> None:
    """Make Triton serve ``version``: export it from the registry if its folder is missing,
    load, check it is ready, and (``warm``) run one inference, because the first call of a
    freshly loaded version pays for lazy initialisation, which should not land on a clinical
    request. A version that is ready already is left alone. For a probe, its encoder version is
    made ready (after checking it is the encoder the probe was fitted on)."""
    if triton.is_model_ready(model_name, version):
        return
    spec = registry.load_spec(model_name, version)
    if spec.encoder is not None:
        _check_encoder(registry, spec)
        make_ready(
            triton, registry, repository_dir, spec.encoder.name, spec.encoder.version, warm=warm
        )
        return
    if not (repository_dir / model_name / str(version)).exists():
        _export(registry, repository_dir, model_name, version, spec)
    triton.load_model(model_name)
    if not triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton did not make {model_name} version {version} ready; nothing was switched."
        )
    if warm:
        triton.infer(model_name, version, warm_batch(spec), spec=spec)


def export_and_load(
    triton: InferenceServer,
    registry: ModelRegistry,
    repository_dir: Path,
    model_name: str,
    version: int,
) -> ModelSpec:
    """Export a registered version to the Triton repository (idempotent for identical weights)
    and load it; returns its spec. Raises before anything is recorded when Triton does not
    make the version ready. A probe is not exported: its encoder version is made ready
    (:func:`make_ready`), and its heads are read from the registry by the gateway."""
    spec = registry.load_spec(model_name, version)
    if spec.encoder is not None:
        _check_encoder(registry, spec)
        make_ready(triton, registry, repository_dir, spec.encoder.name, spec.encoder.version)
        return spec
    _export(registry, repository_dir, model_name, version, spec)
    triton.load_model(model_name)
    if not triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton loaded '{model_name}' but version {version} is not ready; check the "
            "server log and the config's version_policy."
        )
    return spec


#: ``(probe name, version)`` to its heads; the process runtime's cache
#: (:meth:`services.core.runtime.Runtime.probe`).
ProbeLookup = Callable[[str, int], Probe]


def infer_deployment(
    triton: InferenceServer,
    deployment: Deployment,
    batch: npt.NDArray[np.float32],
    *,
    probes: ProbeLookup | None = None,
) -> InferenceOutput:
    """What ``deployment`` answers for a prepared ``batch`` (``pipelines.preprocess.prepare`` by
    its spec). A model is run on Triton. A probe runs its encoder on Triton and applies its
    heads (from ``probes``) to the embedding: the output holds the encoder's embedding and the
    probe's scores, under the probe's tensor names, as if one model had answered."""
    spec = spec_of(deployment)
    if spec.encoder is None:
        return triton.infer(deployment.triton_model, deployment.model_version, batch, spec=spec)
    assert spec.findings is not None
    assert spec.embedding is not None
    if probes is None:
        raise ModelNotLoadedError(
            f"{deployment.model_name} version {deployment.model_version} is a probe, and this "
            "caller has no way to read its heads; pass the runtime's probe cache."
        )
    heads = probes(deployment.model_name, deployment.model_version)
    if (heads.findings, heads.encoder, heads.width) != (
        spec.findings.names,
        spec.encoder,
        spec.embedding.width,
    ):
        raise ConflictError(
            f"The heads stored with {deployment.model_name} version {deployment.model_version} "
            "do not match its spec (findings, encoder or width); fit the probe again."
        )
    out = triton.infer(spec.encoder.name, spec.encoder.version, batch, spec=spec.encoder_view())
    with pipeline_errors():
        scores = apply(heads, out.embeddings)
    return InferenceOutput.of(
        spec,
        {spec.findings.tensor: scores, spec.embedding.tensor: out.embeddings},
        model_name=deployment.model_name,
        model_version=deployment.model_version,
    )
