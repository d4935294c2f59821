"""Queries of the serving tables: deployments (which registered version Triton serves, in which
role), the per-model routing row, and mirrored shadow predictions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from services.core.models import Deployment, DeploymentRole, ModelRouting, ShadowPrediction

# --- deployments -------------------------------------------------------------------------------


def add(session: Session, deployment: Deployment) -> Deployment:
    session.add(deployment)
    session.flush()
    return deployment


def active(
    session: Session, model_name: str, role: DeploymentRole = DeploymentRole.CHAMPION
) -> Deployment | None:
    stmt = (
        select(Deployment)
        .where(Deployment.model_name == model_name, Deployment.role == role, Deployment.active)
        .order_by(Deployment.id.desc())
    )
    return session.scalars(stmt).first()


def get(session: Session, deployment_id: int) -> Deployment | None:
    return session.get(Deployment, deployment_id)


def by_version(session: Session, model_name: str, version: int) -> Deployment | None:
    stmt = select(Deployment).where(
        Deployment.model_name == model_name, Deployment.model_version == version
    )
    return session.scalars(stmt).first()


def list_all(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.model_name, Deployment.id)))


def model_names(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(Deployment.model_name).where(Deployment.active))))


def champions(session: Session) -> dict[str, int]:
    """Active champion version of every model."""
    stmt = select(Deployment.model_name, Deployment.model_version).where(
        Deployment.active, Deployment.role == DeploymentRole.CHAMPION
    )
    return {m: int(v) for m, v in session.execute(stmt)}


# --- routing -----------------------------------------------------------------------------------


def routing(session: Session, model_name: str, *, for_update: bool = False) -> ModelRouting | None:
    """The model's routing row; ``for_update`` locks it, which is how concurrent promotion steps
    of one model queue behind each other."""
    return session.get(ModelRouting, model_name, with_for_update=for_update)


def add_routing(session: Session, row: ModelRouting) -> ModelRouting:
    session.add(row)
    session.flush()
    return row


def all_routing(session: Session) -> Sequence[ModelRouting]:
    return session.scalars(select(ModelRouting)).all()


# --- shadow predictions ------------------------------------------------------------------------


def add_shadow(session: Session, row: ShadowPrediction) -> None:
    session.add(row)


def shadow_count(
    session: Session, model_name: str, candidate_version: int, *, since_id: int = 0
) -> int:
    stmt = select(func.count()).where(
        ShadowPrediction.model_name == model_name,
        ShadowPrediction.candidate_version == candidate_version,
        ShadowPrediction.id > since_id,
    )
    return int(session.scalar(stmt) or 0)


def shadow_rows(
    session: Session, model_name: str, candidate_version: int, *, limit: int
) -> Sequence[ShadowPrediction]:
    """The newest ``limit`` mirrored predictions of the candidate, newest first."""
    stmt = (
        select(ShadowPrediction)
        .where(
            ShadowPrediction.model_name == model_name,
            ShadowPrediction.candidate_version == candidate_version,
        )
        .order_by(ShadowPrediction.id.desc())
        .limit(limit)
    )
    return session.scalars(stmt).all()
