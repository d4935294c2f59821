"""Deployments: record which model version is the champion, and look it up for predictions."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy.orm import Session

from pipelines.contract import IMAGE_SIZE
from pipelines.export_triton import export_model
from services.audit import actions
from services.audit import service as audit
from services.core.errors import ModelNotLoadedError, UnknownModelError, pipeline_errors
from services.core.models import Deployment, DeploymentRole, ModelRouting, RoutingMode
from services.core.ports import InferenceServer, ModelRegistry
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


def deploy_champion(
    session: Session,
    *,
    model_name: str,
    model_version: int,
    mlflow_run_id: str,
    triton_model: str,
    operating_threshold: float = 0.5,
    embedding_dim: int | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> Deployment:
    """Make ``model_version`` the active champion, retiring the previous one, and append a
    ``model.deployed`` audit record by ``actor`` in the same transaction.

    ``embedding_dim`` is the length of the embeddings its events carry (checked at ingestion).
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
    request. A version that is ready already is left alone."""
    if triton.is_model_ready(model_name, version):
        return
    if not (repository_dir / model_name / str(version)).exists():
        model = registry.load_model(model_name, version)
        with pipeline_errors():
            export_model(model, repository_dir, model_name, version)
    triton.load_model(model_name)
    if not triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton did not make {model_name} version {version} ready; nothing was switched."
        )
    if warm:
        triton.infer(model_name, version, np.zeros((1, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32))


def export_and_load(
    triton: InferenceServer,
    registry: ModelRegistry,
    repository_dir: Path,
    model_name: str,
    version: int,
) -> int:
    """Export a registered version to the Triton repository (idempotent for identical weights)
    and load it; returns the model's embedding width. Raises before anything is recorded when
    Triton does not make the version ready."""
    model = registry.load_model(model_name, version)
    with pipeline_errors():
        export_model(model, repository_dir, model_name, version)
    triton.load_model(model_name)
    if not triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton loaded '{model_name}' but version {version} is not ready; check the "
            "server log and the config's version_policy."
        )
    return int(model.embedding_dim)
