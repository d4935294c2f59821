"""Change protocols: ``/v1/models/{model}/protocol`` (read by every role; a new version is
written by ``mlops_engineer`` or ``clinical_safety_officer``)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter

from services.change_protocols import service as protocols
from services.change_protocols.schemas import ProtocolOut
from services.core.errors import NotFoundError
from services.http.deps import Anyone, ModelName, SessionDep, StateDep, Steward
from services.http.errors import COMMON_RESPONSES, STATE_RESPONSES
from services.serving.service import champion

router = APIRouter(tags=["lifecycle"])

_ERR = STATE_RESPONSES


@router.get(
    "/v1/models/{model}/protocol",
    response_model=ProtocolOut,
    summary="The model's current change protocol",
    responses=_ERR,
)
def get_protocol(model: ModelName, _: Anyone, session: SessionDep) -> ProtocolOut:
    row = protocols.latest(session, model)
    if row is None:
        raise NotFoundError(
            f"Model '{model}' has no change protocol yet; PUT one, or the defaults are stored "
            "as version 1 with its first candidate."
        )
    return ProtocolOut.model_validate(row)


@router.get(
    "/v1/models/{model}/protocol/history",
    response_model=list[ProtocolOut],
    summary="Every version of the model's change protocol",
    responses=COMMON_RESPONSES,
)
def protocol_history(model: ModelName, _: Anyone, session: SessionDep) -> list[ProtocolOut]:
    return [ProtocolOut.model_validate(r) for r in protocols.history(session, model)]


@router.put(
    "/v1/models/{model}/protocol",
    response_model=ProtocolOut,
    summary="Store a new version of the model's change protocol (never edits an old one)",
    responses=_ERR,
)
def put_protocol(
    model: ModelName,
    body: dict[str, Any],
    principal: Steward,
    session: SessionDep,
    state: StateDep,
) -> ProtocolOut:
    champion(session, model)  # 404 for an unknown model
    row = protocols.create_version(session, model, protocols.parse(body), actor=principal.name)
    # Stored with the model too; if MLflow refuses, the request fails and nothing is committed.
    state.registry.set_model_tag(
        model, f"radwatch.change_protocol.v{row.version}", json.dumps(row.document, sort_keys=True)
    )
    return ProtocolOut.model_validate(row)
