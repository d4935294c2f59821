"""Promotion stages: start (shadow), canary, champion. Each step is one saga step
(:mod:`services.promotion.flows.saga`).

Shadow and canary thresholds come from the change protocol's rollout plan. The beat task
``lifecycle.advance_promotions`` advances a promotion when its stage has seen enough studies;
``radwatch promote --advance`` does the same by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from services.approvals import service as approvals
from services.audit import actions
from services.audit.service import record
from services.change_protocols import service as protocols
from services.change_protocols.document import ChangeProtocolDocument
from services.core.db import session_scope
from services.core.errors import ConflictError, NotFoundError
from services.core.models import (
    Promotion,
    PromotionKind,
    PromotionState,
    RoutingMode,
)
from services.core.runtime import Runtime
from services.events import repository as events
from services.promotion import repository
from services.promotion.flows.saga import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    Aliases,
    atomic,
    crown,
)
from services.serving import repository as serving
from services.serving import shadow
from services.serving.service import champion as champion_of
from services.serving.service import locked_routing, make_ready, register_candidate, switch_routing


def _make_ready(rt: Runtime, model_name: str, version: int) -> None:
    make_ready(rt.triton, rt.registry, rt.model_repository, model_name, version)


def start(
    rt: Runtime, *, model_name: str, version: int, actor: str, reason: str, run_id: str = ""
) -> int:
    """Begin promoting an approved candidate: load it on Triton, then route a mirrored copy of
    every request to it (shadow). Returns the promotion id."""
    with session_scope(rt.sessions) as session:
        approved = approvals.require_promotable(session, model_name, version)
        champ = champion_of(session, model_name)
        if champ.model_version == version:
            raise ConflictError(f"{model_name} version {version} is already the champion.")
        busy = repository.in_progress(session, model_name)
        if busy is not None:
            raise ConflictError(
                f"{model_name} is already being promoted to version {busy.to_version} "
                f"(promotion {busy.id}, stage {busy.stage}); finish or roll it back first."
            )
        approval_id = approved.id
    _make_ready(rt, model_name, version)

    def step(session: Session, aliases: Aliases) -> Promotion:
        routing = locked_routing(session, model_name)  # row lock: concurrent steps queue here
        if repository.in_progress(session, model_name) is not None:
            raise ConflictError(f"{model_name} started another promotion meanwhile; retry later.")
        champ = champion_of(session, model_name)
        register_candidate(session, champ, version, run_id)
        switch_routing(
            routing, mode=RoutingMode.SHADOW, candidate_version=version, canary_share=0.0
        )
        promotion = repository.add(
            session,
            Promotion(
                model_name=model_name,
                kind=PromotionKind.PROMOTION,
                from_version=champ.model_version,
                to_version=version,
                stage=RoutingMode.SHADOW,
                state=PromotionState.IN_PROGRESS,
                approval_request_id=approval_id,
                started_by=actor,
                reason=reason,
            ),
        )
        aliases.set(CANDIDATE_ALIAS, version)
        record(
            session,
            actor=actor,
            action=actions.PROMOTION_STARTED,
            entity_type=actions.PROMOTION,
            entity_id=str(promotion.id),
            reason=reason,
            payload={
                "model": model_name,
                "from_version": champ.model_version,
                "to_version": version,
                "stage": RoutingMode.SHADOW,
                "approval_request_id": approval_id,
            },
        )
        return promotion

    return atomic(rt, model_name, step)


@dataclass(frozen=True)
class StageProgress:
    stage: RoutingMode
    studies: int
    needed: int
    minutes: float
    needed_minutes: float

    @property
    def ready(self) -> bool:
        return self.studies >= self.needed and self.minutes >= self.needed_minutes


def progress(
    session: Session, promotion: Promotion, protocol: ChangeProtocolDocument
) -> StageProgress:
    since = promotion.stage_started_at
    minutes = (datetime.now(UTC) - since).total_seconds() / 60.0
    plan = protocol.rollout
    if promotion.stage == RoutingMode.SHADOW:
        n = shadow.count(session, promotion.model_name, promotion.to_version)
        return StageProgress(RoutingMode.SHADOW, n, plan.shadow_studies, minutes, 0.0)
    n = events.count(
        session,
        model_name=promotion.model_name,
        model_version=promotion.to_version,
        since=since,
    )
    return StageProgress(RoutingMode.CANARY, n, plan.canary_studies, minutes, plan.canary_minutes)


def advance(rt: Runtime, *, model_name: str, actor: str, force: bool = False) -> int:
    """Move the model's promotion one stage on (shadow -> canary -> champion) when the rollout
    plan's studies and minutes for the current stage are reached (``force`` skips that check
    and is audited as such). Returns the promotion id."""
    with session_scope(rt.sessions) as session:
        promotion = repository.in_progress(session, model_name)
        if promotion is None:
            raise NotFoundError(f"{model_name} has no promotion in progress.")
        _, protocol = protocols.current(session, model_name, actor=actor)
        done = progress(session, promotion, protocol)
        if not done.ready and not force:
            raise ConflictError(
                f"The {done.stage} stage of {model_name} version {promotion.to_version} has seen "
                f"{done.studies} of {done.needed} studies and {done.minutes:.1f} of "
                f"{done.needed_minutes:g} minutes; it advances when both are reached."
            )
        promotion_id, stage, version = promotion.id, promotion.stage, promotion.to_version
    if stage == RoutingMode.SHADOW:
        return _to_canary(rt, model_name, promotion_id, actor, protocol, forced=not done.ready)
    _make_ready(rt, model_name, version)
    return _to_champion(rt, model_name, promotion_id, actor, forced=not done.ready)


def _locked(session: Session, promotion_id: int, stage: RoutingMode) -> Promotion:
    promotion = repository.get(session, promotion_id, for_update=True)
    if (
        promotion is None
        or promotion.state != PromotionState.IN_PROGRESS
        or promotion.stage != stage
    ):
        raise ConflictError(f"Promotion {promotion_id} is not in {stage} any more.")
    return promotion


def _to_canary(
    rt: Runtime,
    model_name: str,
    promotion_id: int,
    actor: str,
    protocol: ChangeProtocolDocument,
    *,
    forced: bool,
) -> int:
    def step(session: Session, aliases: Aliases) -> Promotion:
        promotion = _locked(session, promotion_id, RoutingMode.SHADOW)
        routing = locked_routing(session, model_name)
        switch_routing(routing, mode=RoutingMode.CANARY, canary_share=protocol.rollout.canary_share)
        promotion.stage, promotion.stage_started_at = RoutingMode.CANARY, datetime.now(UTC)
        record(
            session,
            actor=actor,
            action=actions.PROMOTION_STAGE,
            entity_type=actions.PROMOTION,
            entity_id=str(promotion.id),
            payload={
                "model": model_name,
                "to_version": promotion.to_version,
                "stage": RoutingMode.CANARY,
                "canary_share": protocol.rollout.canary_share,
                "forced": forced,
            },
        )
        return promotion

    return atomic(rt, model_name, step)


def _to_champion(
    rt: Runtime, model_name: str, promotion_id: int, actor: str, *, forced: bool
) -> int:
    def step(session: Session, aliases: Aliases) -> Promotion:
        promotion = _locked(session, promotion_id, RoutingMode.CANARY)
        old = champion_of(session, model_name)
        new = serving.by_version(session, model_name, promotion.to_version)
        assert new is not None
        routing = locked_routing(session, model_name)
        switch_routing(
            routing,
            mode=RoutingMode.CHAMPION,
            champion_version=promotion.to_version,
            previous_champion_version=old.model_version,
            candidate_version=None,
            canary_share=0.0,
        )
        promotion.stage, promotion.state = RoutingMode.CHAMPION, PromotionState.SUCCEEDED
        promotion.finished_at = promotion.stage_started_at = datetime.now(UTC)
        # MLflow first, audit records last: the audit chain's lock is held until the commit, so
        # it must not wait on MLflow's answers.
        aliases.set(CHAMPION_ALIAS, promotion.to_version)
        aliases.delete(CANDIDATE_ALIAS)
        crown(session, new, actor)
        record(
            session,
            actor=actor,
            action=actions.PROMOTION_SUCCEEDED,
            entity_type=actions.PROMOTION,
            entity_id=str(promotion.id),
            payload={
                "model": model_name,
                "from_version": old.model_version,
                "to_version": promotion.to_version,
                "stage": RoutingMode.CHAMPION,
                "forced": forced,
            },
        )
        return promotion

    return atomic(rt, model_name, step)
