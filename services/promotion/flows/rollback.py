"""Rollback: by hand (``radwatch rollback``, ``POST /v1/models/{m}/rollback``) or automatically
when the change protocol's rollback trigger fires after a promotion (beat
``lifecycle.rollback_watch``). Each rollback is one saga step
(:mod:`services.promotion.flows.saga`); an automatic one also opens a critical alert through
the alerts domain, so it is announced by webhook like any other alert."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from services.alerts import repository as alerts_repository
from services.alerts import service as alerts
from services.audit import actions
from services.audit.service import record
from services.change_protocols import service as protocols
from services.core.db import session_scope
from services.core.errors import ConflictError, NotFoundError, RadwatchError
from services.core.models import (
    Alert,
    Promotion,
    PromotionKind,
    PromotionState,
    RoutingMode,
    Severity,
)
from services.core.runtime import Runtime
from services.promotion import repository
from services.promotion.flows.saga import (
    CANDIDATE_ALIAS,
    CHAMPION_ALIAS,
    Aliases,
    atomic,
    crown,
)
from services.serving import repository as serving
from services.serving.service import champion as champion_of
from services.serving.service import locked_routing, make_ready, retire_candidate, switch_routing

log = logging.getLogger(__name__)

#: Monitor name of the alert an automatic rollback opens.
ROLLBACK_MONITOR = "automatic_rollback"


def rollback(
    rt: Runtime, *, model_name: str, actor: str, reason: str, automatic: bool = False
) -> int:
    """Restore the previous champion (or abort a shadow/canary promotion, which serves the
    champion again at once). The version going back into service is made ready on Triton before
    anything switches. Returns the rollback's promotion id."""
    with session_scope(rt.sessions) as session:
        routing = serving.routing(session, model_name)
        in_flight = repository.in_progress(session, model_name)
        if in_flight is not None:
            target = (
                routing.champion_version
                if routing
                else champion_of(session, model_name).model_version
            )
        elif routing is None or routing.previous_champion_version is None:
            raise ConflictError(
                f"{model_name} has no previous champion to roll back to (it was never promoted "
                "by radwatch)."
            )
        else:
            target = routing.previous_champion_version
    make_ready(rt.triton, rt.registry, rt.model_repository, model_name, target)

    def step(session: Session, aliases: Aliases) -> Promotion:
        routing = locked_routing(session, model_name)
        champ = champion_of(session, model_name)
        aborting = repository.in_progress(session, model_name)
        if aborting is not None:
            aborting.state, aborting.finished_at = PromotionState.FAILED, datetime.now(UTC)
            aborting.error = f"rolled back by {actor}: {reason}"[:2000]
            if aborting.stage in (RoutingMode.SHADOW, RoutingMode.CANARY):
                retire_candidate(session, model_name, aborting.to_version)
            aliases.delete(CANDIDATE_ALIAS)
            switch_routing(
                routing, mode=RoutingMode.CHAMPION, candidate_version=None, canary_share=0.0
            )
            from_version = aborting.to_version
        else:
            back = serving.by_version(session, model_name, target)
            if back is None:
                raise NotFoundError(f"{model_name} version {target} has no deployment record.")
            switch_routing(
                routing,
                mode=RoutingMode.CHAMPION,
                champion_version=target,
                previous_champion_version=None,
                candidate_version=None,
                canary_share=0.0,
            )
            aliases.set(CHAMPION_ALIAS, target)  # before any audit record (see stages)
            crown(session, back, actor)
            from_version = champ.model_version
        promotion = repository.add(
            session,
            Promotion(
                model_name=model_name,
                kind=PromotionKind.ROLLBACK,
                from_version=from_version,
                to_version=target,
                stage=RoutingMode.CHAMPION,
                state=PromotionState.SUCCEEDED,
                started_by=actor,
                reason=reason,
                finished_at=datetime.now(UTC),
            ),
        )
        record(
            session,
            actor=actor,
            action=actions.ROLLBACK_SUCCEEDED,
            entity_type=actions.PROMOTION,
            entity_id=str(promotion.id),
            reason=reason,
            payload={
                "model": model_name,
                "from_version": from_version,
                "to_version": target,
                "automatic": automatic,
                "aborted_promotion": aborting.id if aborting is not None else None,
            },
        )
        return promotion

    return atomic(rt, model_name, step)


def rollback_trigger(session: Session, model_name: str) -> Alert | None:
    """The alert that, under the model's change protocol, calls for an automatic rollback of its
    latest promotion: unresolved, opened after the promotion finished and within the trigger's
    window, from a listed monitor (or any), at or above the trigger's severity."""
    last = repository.last_succeeded(session, model_name)
    if last is None or last.kind != PromotionKind.PROMOTION or last.finished_at is None:
        return None
    row = protocols.latest(session, model_name)
    if row is None:
        return None
    protocol = protocols.parse(row.document)
    finished = last.finished_at
    candidates = alerts_repository.unresolved(
        session, model_name, opened_since=finished, exclude_monitor=ROLLBACK_MONITOR
    )
    for trigger in protocol.rollback_triggers:
        if datetime.now(UTC) > finished + timedelta(minutes=trigger.within_minutes):
            continue
        for alert in candidates:
            if trigger.monitors and alert.monitor not in trigger.monitors:
                continue
            if Severity.rank_of(alert.severity) >= Severity(trigger.min_severity).rank:
                return alert
    return None


def watch(rt: Runtime) -> list[int]:
    """Roll back every model whose protocol's rollback trigger fired; opens a critical alert for
    each (announced by webhook). Returns the rollback ids. Runs from beat
    (``lifecycle.rollback_watch``)."""
    done: list[int] = []
    with session_scope(rt.sessions) as session:
        fired = {
            m: a
            for m in repository.model_names(session)
            if (a := rollback_trigger(session, m)) is not None
        }
        triggers = {m: (a.id, a.monitor, a.severity, a.result_id) for m, a in fired.items()}
    for model_name, (alert_id, monitor, severity, result_id) in triggers.items():
        reason = (
            f"automatic rollback: alert {alert_id} ({monitor}, {severity}) opened after the "
            "promotion, a rollback trigger of the change protocol"
        )
        try:
            rollback_id = rollback(
                rt, model_name=model_name, actor=actions.ACTOR_SYSTEM, reason=reason, automatic=True
            )
        except RadwatchError as exc:
            log.error("automatic rollback of %s failed: %s", model_name, exc.message)
            continue
        with session_scope(rt.sessions) as session:
            alerts.open(
                session,
                enqueuer=rt.enqueuer,
                monitor=ROLLBACK_MONITOR,
                model_name=model_name,
                site="*",
                severity=Severity.CRITICAL,
                detail=f"{reason}; rollback {rollback_id} restored the previous champion.",
                result_id=result_id,
                opened_after_predictions=0,
                actor=actions.ACTOR_SYSTEM,
                reason=reason,
                context={"rollback_id": rollback_id, "trigger_alert": alert_id},
            )
        done.append(rollback_id)
    return done
