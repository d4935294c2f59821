"""Queries over deployments (which registered model version Triton serves, in which role)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from services.core.models import Deployment


def add(session: Session, deployment: Deployment) -> Deployment:
    session.add(deployment)
    session.flush()
    return deployment


def active(session: Session, model_name: str, role: str = "champion") -> Deployment | None:
    stmt = (
        select(Deployment)
        .where(Deployment.model_name == model_name, Deployment.role == role, Deployment.active)
        .order_by(Deployment.id.desc())
    )
    return session.scalars(stmt).first()


def by_version(session: Session, model_name: str, version: int) -> Deployment | None:
    stmt = select(Deployment).where(
        Deployment.model_name == model_name, Deployment.model_version == version
    )
    return session.scalars(stmt).first()


def list_all(session: Session) -> list[Deployment]:
    return list(session.scalars(select(Deployment).order_by(Deployment.model_name, Deployment.id)))


def model_names(session: Session) -> list[str]:
    return sorted(set(session.scalars(select(Deployment.model_name).where(Deployment.active))))
