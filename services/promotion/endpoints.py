"""Promotion and rollback: start or advance a promotion (``mlops_engineer``), roll back
(``mlops_engineer`` or ``clinical_safety_officer``: pulling a model is a safety act), list
promotions (every role)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from services.core.errors import NotFoundError
from services.http.deps import Anyone, Engineer, ModelName, SessionDep, StateDep, Steward
from services.http.errors import COMMON_RESPONSES, STATE_RESPONSES
from services.promotion import flows as promotion
from services.promotion import repository
from services.promotion.schemas import AdvanceIn, PromotionIn, PromotionOut, ReasonIn

router = APIRouter(tags=["lifecycle"])

_ERR = STATE_RESPONSES


def _promotion(session: Session, promotion_id: int) -> PromotionOut:
    """The promotion as the flow committed it (the request's session reads after the flow)."""
    row = repository.get(session, promotion_id)
    if row is None:
        raise NotFoundError(f"No promotion {promotion_id}.")
    return PromotionOut.model_validate(row)


@router.post(
    "/v1/models/{model}/promotion",
    response_model=PromotionOut,
    summary="Start promoting an approved candidate: Triton loads it, then shadow traffic",
    responses=_ERR,
)
def start_promotion(
    model: ModelName, body: PromotionIn, principal: Engineer, state: StateDep, session: SessionDep
) -> PromotionOut:
    info = state.registry.get_version(model, body.version)
    pid = promotion.start(
        state,
        model_name=model,
        version=body.version,
        actor=principal.name,
        reason=body.reason,
        run_id=info.run_id,
    )
    return _promotion(session, pid)


@router.post(
    "/v1/models/{model}/promotion/advance",
    response_model=PromotionOut,
    summary="Move the promotion on: shadow -> canary -> champion, when the plan allows",
    responses=_ERR,
)
def advance_promotion(
    model: ModelName, body: AdvanceIn, principal: Engineer, state: StateDep, session: SessionDep
) -> PromotionOut:
    pid = promotion.advance(state, model_name=model, actor=principal.name, force=body.force)
    return _promotion(session, pid)


@router.post(
    "/v1/models/{model}/rollback",
    response_model=PromotionOut,
    summary="Restore the previous champion, or abort a promotion in shadow/canary",
    responses=_ERR,
)
def rollback(
    model: ModelName, body: ReasonIn, principal: Steward, state: StateDep, session: SessionDep
) -> PromotionOut:
    pid = promotion.rollback(state, model_name=model, actor=principal.name, reason=body.reason)
    return _promotion(session, pid)


@router.get(
    "/v1/promotions",
    response_model=list[PromotionOut],
    summary="Promotions and rollbacks, newest first",
    responses=COMMON_RESPONSES,
)
def list_promotions(
    _: Anyone, session: SessionDep, model: Annotated[str | None, Query(max_length=128)] = None
) -> list[PromotionOut]:
    return [
        PromotionOut.model_validate(p) for p in repository.list_recent(session, model_name=model)
    ]
