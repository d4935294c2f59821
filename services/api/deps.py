"""Typed dependencies. Clients are built once in the lifespan (:mod:`services.api.app`) and handed
out from ``app.state``; nothing here connects at import time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.auth import service as auth
from services.auth.service import Principal
from services.core.db import session_scope
from services.core.models import Role
from services.core.settings import Settings
from services.serving.client import TritonClient

if TYPE_CHECKING:
    from services.registry.mlflow_registry import MlflowRegistry


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    triton: TritonClient
    _registry: MlflowRegistry | None = field(default=None, repr=False)

    @property
    def registry(self) -> MlflowRegistry:
        """The MLflow adapter, built on first use: only lifecycle routes need it, and opening an
        MLflow store is slow enough that the prediction path should not pay for it."""
        if self._registry is None:
            from services.registry.mlflow_registry import MlflowRegistry

            self._registry = MlflowRegistry(self.settings.resolved_mlflow_uri)
        return self._registry


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.radwatch
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    """The request's unit of work. ``scope="function"`` below makes the commit happen before the
    response is sent, so a 2xx always means the data is durable."""
    with session_scope(state.sessions) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def _api_key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:]
    return request.headers.get("x-api-key")


def get_principal(request: Request, state: StateDep) -> Principal:
    # Authentication uses its own short session so a failed lookup never shares a transaction
    # with the request's writes.
    with session_scope(state.sessions) as session:
        return auth.authenticate(session, _api_key(request))


PrincipalDep = Annotated[Principal, Depends(get_principal)]


def require_roles(*roles: Role) -> Callable[[Principal], Principal]:
    allowed = frozenset(roles)

    def _check(principal: PrincipalDep) -> Principal:
        return auth.require(principal, allowed)

    return _check


ANY_ROLE = (Role.MLOPS_ENGINEER, Role.CLINICAL_SAFETY_OFFICER, Role.AUDITOR)
