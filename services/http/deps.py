"""Typed dependencies. The process :class:`~services.core.runtime.Runtime` is built once in the
lifespan (:mod:`services.api.app`) and handed out from ``app.state``; nothing here connects at
import time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.orm import Session

from services.auth import service as auth
from services.auth.service import Principal
from services.core.db import session_scope
from services.core.models import Role
from services.core.runtime import Runtime


def get_state(request: Request) -> Runtime:
    state: Runtime = request.app.state.radwatch
    return state


#: The process's runtime (settings, sessions, adapters), as routes receive it.
StateDep = Annotated[Runtime, Depends(get_state)]


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


#: The principals the endpoints ask for, by role (one definition for every router).
Anyone = Annotated[Principal, Depends(require_roles(*ANY_ROLE))]
Officer = Annotated[Principal, Depends(require_roles(Role.CLINICAL_SAFETY_OFFICER))]
Engineer = Annotated[Principal, Depends(require_roles(Role.MLOPS_ENGINEER))]
#: Either of the two roles that look after a model's lifecycle.
Steward = Annotated[
    Principal, Depends(require_roles(Role.MLOPS_ENGINEER, Role.CLINICAL_SAFETY_OFFICER))
]
#: A registered model's name in a URL path.
ModelName = Annotated[str, Path(min_length=1, max_length=128, description="Registered model.")]
