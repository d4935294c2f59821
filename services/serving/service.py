"""Deployments: record which model version is the champion, and look it up for predictions."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.orm import Session

from pipelines.export_triton import export_model
from services.audit import actions
from services.audit import service as audit
from services.core.errors import ModelNotLoadedError, UnknownModelError
from services.core.models import Deployment
from services.core.settings import Settings
from services.registry.mlflow_registry import MlflowRegistry
from services.serving import repository
from services.serving.client import TritonClient


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
        deployment.role = "champion"
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
                role="champion",
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


def list_deployments(session: Session) -> list[Deployment]:
    return repository.list_all(session)


def deploy_version(
    session: Session,
    *,
    registry: MlflowRegistry,
    triton: TritonClient,
    repository_dir: Path,
    model_name: str,
    version: int,
    operating_threshold: float = 0.5,
    settings: Settings | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> Deployment:
    """Export a registered version to the Triton repository, load it, and make it champion.

    With ``settings``, a model deployed for the first time also gets the default acquisition
    drift monitor (window, alpha and persistence from the settings) unless it has monitors.

    Triton loads the model before the deployment row changes, so a failed load leaves the
    previous champion serving and recorded.
    """
    info = registry.get_version(model_name, version)
    model = registry.load_model(model_name, version)
    export_model(model, repository_dir, model_name, version)
    triton.load_model(model_name)
    if not triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton loaded '{model_name}' but version {version} is not ready; check the "
            "server log and the config's version_policy."
        )
    deployment = deploy_champion(
        session,
        model_name=model_name,
        model_version=version,
        mlflow_run_id=info.run_id,
        triton_model=model_name,
        operating_threshold=operating_threshold,
        embedding_dim=model.embedding_dim,
        actor=actor,
    )
    if settings is not None:
        from services.monitoring.config import ensure_default_drift

        ensure_default_drift(session, model_name=model_name, settings=settings)
    return deployment
