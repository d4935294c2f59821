"""Promotion (shadow -> canary -> champion) and rollback, all-or-nothing across three systems.

Each step changes three things that must agree: Triton (what is loaded), the database (routing,
deployments, the promotion record and the audit log) and MLflow (the ``champion``/``candidate``
aliases). A step runs as:

1. Make Triton ready first (load the version that is about to receive traffic and check it is
   ready). Loading is additive: with ``version_policy: all`` the old version keeps serving while
   the new one loads, so there is no gap. Nothing is unloaded by a promotion; the previous
   champion stays loaded so a rollback needs no load at all.
2. Change the database rows in one transaction (not yet committed).
3. Move the MLflow aliases, remembering how to undo each move.
4. Commit. If anything in 2-4 fails, the transaction rolls back and the alias moves are undone
   in reverse order, so MLflow, routing and the audit log are all as before the step. The
   failure is logged and answered with a clear error; a failed step leaves no audit record,
   because nothing changed.

Shadow and canary thresholds come from the change protocol's rollout plan. The beat task
``lifecycle.advance_promotions`` advances a promotion when its stage has seen enough studies;
``radwatch promote --advance`` does the same by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Protocol

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import IMAGE_SIZE
from pipelines.export_triton import export_model
from pipelines.model import RadiographNet
from services.audit import actions
from services.audit.service import record
from services.core.db import session_scope
from services.core.errors import ConflictError, ModelNotLoadedError, NotFoundError, RadwatchError
from services.core.models import (
    Alert,
    Deployment,
    ModelRouting,
    PredictionEvent,
    Promotion,
)
from services.lifecycle import approvals, protocols
from services.lifecycle.protocol import ChangeProtocolDocument
from services.registry.protocols import ModelVersionInfo
from services.serving import repository as deployments
from services.serving import shadow
from services.serving.client import TritonClient
from services.serving.routing import CANARY, CHAMPION, SHADOW
from services.serving.service import champion as champion_of
from services.serving.service import deploy_champion

log = logging.getLogger(__name__)

PROMOTION, ROLLBACK = "promotion", "rollback"
IN_PROGRESS, SUCCEEDED, FAILED = "in_progress", "succeeded", "failed"
CANDIDATE_ALIAS, CHAMPION_ALIAS = "candidate", "champion"


class AliasRegistry(Protocol):
    """What promotion needs from the model registry (MLflow adapter)."""

    def set_alias(self, name: str, alias: str, version: int) -> None: ...
    def delete_alias(self, name: str, alias: str) -> None: ...
    def alias_version(self, name: str, alias: str) -> int | None: ...
    def load_model(self, name: str, version: int) -> RadiographNet: ...
    def get_version(self, name: str, version: int) -> ModelVersionInfo: ...


@dataclass
class _Undo:
    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        for what, fn in reversed(self.steps):
            try:
                fn()
            except Exception as exc:  # keep undoing the rest; say what could not be undone
                log.error("could not undo %s: %s", what, type(exc).__name__)


class _Aliases:
    """Alias moves that remember how to undo themselves."""

    def __init__(self, registry: AliasRegistry, model_name: str, undo: _Undo) -> None:
        self.registry, self.model, self.undo = registry, model_name, undo

    def _restore(self, alias: str, before: int | None) -> Callable[[], None]:
        def restore() -> None:
            if before is None:
                self.registry.delete_alias(self.model, alias)
            else:
                self.registry.set_alias(self.model, alias, before)

        return restore

    # The undo is registered before the move: a move that fails after MLflow applied it (a
    # timeout on the answer) is still undone, and undoing a move that never happened is a no-op.
    def set(self, alias: str, version: int) -> None:
        before = self.registry.alias_version(self.model, alias)
        self.undo.add(f"alias {alias}", self._restore(alias, before))
        self.registry.set_alias(self.model, alias, version)

    def delete(self, alias: str) -> None:
        before = self.registry.alias_version(self.model, alias)
        self.undo.add(f"alias {alias}", self._restore(alias, before))
        self.registry.delete_alias(self.model, alias)


@dataclass
class Lifecycle:
    """The three systems a step touches."""

    sessions: sessionmaker[Session]
    registry: AliasRegistry
    triton: TritonClient
    repository_dir: Path  # the Triton model repository


def _atomic(ctx: Lifecycle, model_name: str, step: Callable[[Session, _Aliases], Promotion]) -> int:
    """Run ``step`` all-or-nothing (see the module docstring); returns the promotion id."""
    undo = _Undo()
    try:
        with session_scope(ctx.sessions) as session:
            promotion = step(session, _Aliases(ctx.registry, model_name, undo))
            session.flush()
            promotion_id = promotion.id
        return promotion_id
    except BaseException as exc:
        undo.run()
        log.warning("lifecycle step on %s undone: %s", model_name, type(exc).__name__)
        raise


def _ensure_loaded(ctx: Lifecycle, model_name: str, version: int) -> None:
    """Triton serves ``version`` (exported from the registry if its folder is missing)."""
    if ctx.triton.is_model_ready(model_name, version):
        return
    repo = ctx.repository_dir
    if not (repo / model_name / str(version)).exists():
        export_model(ctx.registry.load_model(model_name, version), repo, model_name, version)
    ctx.triton.load_model(model_name)
    if not ctx.triton.is_model_ready(model_name, version):
        raise ModelNotLoadedError(
            f"Triton did not make {model_name} version {version} ready; nothing was switched."
        )
    # One inference before any traffic: the first call of a freshly loaded version pays for
    # lazy initialisation, which should not land on a clinical request.
    ctx.triton.infer(model_name, version, np.zeros((1, 1, IMAGE_SIZE, IMAGE_SIZE), np.float32))


def _routing(session: Session, model_name: str) -> ModelRouting:
    row = session.get(ModelRouting, model_name, with_for_update=True)
    if row is None:
        champ = champion_of(session, model_name)
        row = ModelRouting(
            model_name=model_name, champion_version=champ.model_version, mode=CHAMPION
        )
        session.add(row)
        session.flush()
    return row


def _bump(row: ModelRouting, **changes: object) -> None:
    for key, value in changes.items():
        setattr(row, key, value)
    row.generation += 1
    row.updated_at = datetime.now(UTC)


def _crown(session: Session, deployment: Deployment, actor: str) -> None:
    """Make an already-deployed version the champion again, keeping its deployment settings."""
    deploy_champion(
        session,
        model_name=deployment.model_name,
        model_version=deployment.model_version,
        mlflow_run_id=deployment.mlflow_run_id,
        triton_model=deployment.triton_model,
        operating_threshold=deployment.operating_threshold,
        embedding_dim=deployment.embedding_dim,
        actor=actor,
    )


def current(session: Session, model_name: str) -> Promotion | None:
    stmt = (
        select(Promotion)
        .where(
            Promotion.model_name == model_name,
            Promotion.kind == PROMOTION,
            Promotion.state == IN_PROGRESS,
        )
        .order_by(Promotion.id.desc())
    )
    return session.scalars(stmt).first()


def list_promotions(
    session: Session, *, model_name: str | None = None, limit: int = 200
) -> list[Promotion]:
    stmt = select(Promotion).order_by(Promotion.id.desc()).limit(limit)
    if model_name:
        stmt = stmt.where(Promotion.model_name == model_name)
    return list(session.scalars(stmt))


def _candidate_deployment(session: Session, champ: Deployment, version: int, run_id: str) -> None:
    row = deployments.by_version(session, champ.model_name, version)
    if row is None:
        session.add(
            Deployment(
                model_name=champ.model_name,
                model_version=version,
                mlflow_run_id=run_id,
                triton_model=champ.triton_model,
                role="candidate",
                active=True,
                operating_threshold=champ.operating_threshold,
                embedding_dim=champ.embedding_dim,
            )
        )
    elif not (row.role == "champion" and row.active):
        row.role, row.active = "candidate", True


def start(
    ctx: Lifecycle, *, model_name: str, version: int, actor: str, reason: str, run_id: str = ""
) -> int:
    """Begin promoting an approved candidate: load it on Triton, then route a mirrored copy of
    every request to it (shadow). Returns the promotion id."""
    with session_scope(ctx.sessions) as session:
        approved = approvals.require_promotable(session, model_name, version)
        champ = champion_of(session, model_name)
        if champ.model_version == version:
            raise ConflictError(f"{model_name} version {version} is already the champion.")
        busy = current(session, model_name)
        if busy is not None:
            raise ConflictError(
                f"{model_name} is already being promoted to version {busy.to_version} "
                f"(promotion {busy.id}, stage {busy.stage}); finish or roll it back first."
            )
        approval_id = approved.id
    _ensure_loaded(ctx, model_name, version)

    def step(session: Session, aliases: _Aliases) -> Promotion:
        routing = _routing(session, model_name)  # row lock: concurrent steps queue here
        if current(session, model_name) is not None:
            raise ConflictError(f"{model_name} started another promotion meanwhile; retry later.")
        champ = champion_of(session, model_name)
        _candidate_deployment(session, champ, version, run_id)
        _bump(routing, mode=SHADOW, candidate_version=version, canary_share=0.0)
        promotion = Promotion(
            model_name=model_name,
            kind=PROMOTION,
            from_version=champ.model_version,
            to_version=version,
            stage=SHADOW,
            state=IN_PROGRESS,
            approval_request_id=approval_id,
            started_by=actor,
            reason=reason,
        )
        session.add(promotion)
        session.flush()
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
                "stage": SHADOW,
                "approval_request_id": approval_id,
            },
        )
        return promotion

    return _atomic(ctx, model_name, step)


@dataclass(frozen=True)
class StageProgress:
    stage: str
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
    at = promotion.stage_started_at
    since = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    minutes = (datetime.now(UTC) - since).total_seconds() / 60.0
    plan = protocol.rollout
    if promotion.stage == SHADOW:
        n = shadow.count(session, promotion.model_name, promotion.to_version)
        return StageProgress(SHADOW, n, plan.shadow_studies, minutes, 0.0)
    n = int(
        session.scalar(
            select(func.count()).where(
                PredictionEvent.model_name == promotion.model_name,
                PredictionEvent.model_version == promotion.to_version,
                PredictionEvent.created_at >= since,
            )
        )
        or 0
    )
    return StageProgress(CANARY, n, plan.canary_studies, minutes, plan.canary_minutes)


def advance(ctx: Lifecycle, *, model_name: str, actor: str, force: bool = False) -> int:
    """Move the model's promotion one stage on (shadow -> canary -> champion) when the rollout
    plan's studies and minutes for the current stage are reached (``force`` skips that check
    and is audited as such). Returns the promotion id."""
    with session_scope(ctx.sessions) as session:
        promotion = current(session, model_name)
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
    if stage == SHADOW:
        return _to_canary(ctx, model_name, promotion_id, actor, protocol, forced=not done.ready)
    _ensure_loaded(ctx, model_name, version)
    return _to_champion(ctx, model_name, promotion_id, actor, forced=not done.ready)


def _to_canary(
    ctx: Lifecycle,
    model_name: str,
    promotion_id: int,
    actor: str,
    protocol: ChangeProtocolDocument,
    *,
    forced: bool,
) -> int:
    def step(session: Session, aliases: _Aliases) -> Promotion:
        promotion = session.get(Promotion, promotion_id, with_for_update=True)
        assert promotion is not None
        if promotion.state != IN_PROGRESS or promotion.stage != SHADOW:
            raise ConflictError(f"Promotion {promotion_id} is not in shadow any more.")
        routing = _routing(session, model_name)
        _bump(routing, mode=CANARY, canary_share=protocol.rollout.canary_share)
        promotion.stage, promotion.stage_started_at = CANARY, datetime.now(UTC)
        record(
            session,
            actor=actor,
            action=actions.PROMOTION_STAGE,
            entity_type=actions.PROMOTION,
            entity_id=str(promotion.id),
            payload={
                "model": model_name,
                "to_version": promotion.to_version,
                "stage": CANARY,
                "canary_share": protocol.rollout.canary_share,
                "forced": forced,
            },
        )
        return promotion

    return _atomic(ctx, model_name, step)


def _to_champion(
    ctx: Lifecycle, model_name: str, promotion_id: int, actor: str, *, forced: bool
) -> int:
    def step(session: Session, aliases: _Aliases) -> Promotion:
        promotion = session.get(Promotion, promotion_id, with_for_update=True)
        assert promotion is not None
        if promotion.state != IN_PROGRESS or promotion.stage != CANARY:
            raise ConflictError(f"Promotion {promotion_id} is not in canary any more.")
        old = champion_of(session, model_name)
        new = deployments.by_version(session, model_name, promotion.to_version)
        assert new is not None
        routing = _routing(session, model_name)
        _bump(
            routing,
            mode=CHAMPION,
            champion_version=promotion.to_version,
            previous_champion_version=old.model_version,
            candidate_version=None,
            canary_share=0.0,
        )
        promotion.stage, promotion.state = CHAMPION, SUCCEEDED
        promotion.finished_at = promotion.stage_started_at = datetime.now(UTC)
        # MLflow first, audit records last: the audit chain's lock is held until the commit, so
        # it must not wait on MLflow's answers.
        aliases.set(CHAMPION_ALIAS, promotion.to_version)
        aliases.delete(CANDIDATE_ALIAS)
        _crown(session, new, actor)
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
                "stage": CHAMPION,
                "forced": forced,
            },
        )
        return promotion

    return _atomic(ctx, model_name, step)


def rollback(
    ctx: Lifecycle, *, model_name: str, actor: str, reason: str, automatic: bool = False
) -> int:
    """Restore the previous champion (or abort a shadow/canary promotion, which serves the
    champion again at once). The version going back into service is made ready on Triton before
    anything switches. Returns the rollback's promotion id."""
    with session_scope(ctx.sessions) as session:
        routing = session.get(ModelRouting, model_name)
        in_flight = current(session, model_name)
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
    _ensure_loaded(ctx, model_name, target)

    def step(session: Session, aliases: _Aliases) -> Promotion:
        routing = _routing(session, model_name)
        champ = champion_of(session, model_name)
        aborting = current(session, model_name)
        if aborting is not None:
            aborting.state, aborting.finished_at = FAILED, datetime.now(UTC)
            aborting.error = f"rolled back by {actor}: {reason}"[:2000]
            if aborting.stage in (SHADOW, CANARY):
                cand = deployments.by_version(session, model_name, aborting.to_version)
                if cand is not None and cand.role == "candidate":
                    cand.active = False
            aliases.delete(CANDIDATE_ALIAS)
            _bump(routing, mode=CHAMPION, candidate_version=None, canary_share=0.0)
            from_version = aborting.to_version
        else:
            back = deployments.by_version(session, model_name, target)
            if back is None:
                raise NotFoundError(f"{model_name} version {target} has no deployment record.")
            _bump(
                routing,
                mode=CHAMPION,
                champion_version=target,
                previous_champion_version=None,
                candidate_version=None,
                canary_share=0.0,
            )
            aliases.set(CHAMPION_ALIAS, target)  # before any audit record (see _to_champion)
            _crown(session, back, actor)
            from_version = champ.model_version
        promotion = Promotion(
            model_name=model_name,
            kind=ROLLBACK,
            from_version=from_version,
            to_version=target,
            stage=CHAMPION,
            state=SUCCEEDED,
            started_by=actor,
            reason=reason,
            finished_at=datetime.now(UTC),
        )
        session.add(promotion)
        session.flush()
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

    return _atomic(ctx, model_name, step)


def rollback_trigger(session: Session, model_name: str) -> Alert | None:
    """The alert that, under the model's change protocol, calls for an automatic rollback of its
    latest promotion: unresolved, opened after the promotion finished and within the trigger's
    window, from a listed monitor (or any), at or above the trigger's severity."""
    last = session.scalars(
        select(Promotion)
        .where(Promotion.model_name == model_name, Promotion.state == SUCCEEDED)
        .order_by(Promotion.id.desc())
        .limit(1)
    ).first()
    if last is None or last.kind != PROMOTION or last.finished_at is None:
        return None
    row = protocols.latest(session, model_name)
    if row is None:
        return None
    protocol = ChangeProtocolDocument.model_validate(row.document)
    finished = last.finished_at if last.finished_at.tzinfo else last.finished_at.replace(tzinfo=UTC)
    rank = {"warning": 0, "critical": 1}
    for trigger in protocol.rollback_triggers:
        if datetime.now(UTC) > finished + timedelta(minutes=trigger.within_minutes):
            continue
        stmt = (
            select(Alert)
            .where(
                Alert.model_name == model_name,
                Alert.state != "resolved",
                Alert.opened_at >= finished,
                Alert.monitor != ROLLBACK_MONITOR,
            )
            .order_by(Alert.id)
        )
        for alert in session.scalars(stmt):
            if trigger.monitors and alert.monitor not in trigger.monitors:
                continue
            if rank.get(alert.severity, 0) >= rank[trigger.min_severity]:
                return alert
    return None


#: Monitor name of the alert an automatic rollback opens.
ROLLBACK_MONITOR = "automatic_rollback"


def watch(ctx: Lifecycle) -> list[int]:
    """Roll back every model whose protocol's rollback trigger fired; opens an alert for each.
    Returns the rollback ids. Runs from beat (``lifecycle.rollback_watch``)."""
    done: list[int] = []
    with session_scope(ctx.sessions) as session:
        models = sorted(set(session.scalars(select(Promotion.model_name).distinct())))
        fired = {m: a for m in models if (a := rollback_trigger(session, m)) is not None}
        triggers = {m: (a.id, a.monitor, a.severity, a.result_id) for m, a in fired.items()}
    for model_name, (alert_id, monitor, severity, result_id) in triggers.items():
        reason = (
            f"automatic rollback: alert {alert_id} ({monitor}, {severity}) opened after the "
            "promotion, a rollback trigger of the change protocol"
        )
        try:
            rollback_id = rollback(
                ctx,
                model_name=model_name,
                actor=actions.ACTOR_SYSTEM,
                reason=reason,
                automatic=True,
            )
        except RadwatchError as exc:
            log.error("automatic rollback of %s failed: %s", model_name, exc.message)
            continue
        with session_scope(ctx.sessions) as session:
            alert = Alert(
                monitor=ROLLBACK_MONITOR,
                model_name=model_name,
                site="*",
                severity="critical",
                detail=f"{reason}; rollback {rollback_id} restored the previous champion.",
                result_id=result_id,
                opened_after_predictions=0,
            )
            session.add(alert)
            session.flush()
            record(
                session,
                actor=actions.ACTOR_SYSTEM,
                action=actions.ALERT_OPENED,
                entity_type=actions.ALERT,
                entity_id=str(alert.id),
                reason=reason,
                payload={
                    "model": model_name,
                    "rollback_id": rollback_id,
                    "trigger_alert": alert_id,
                },
            )
        done.append(rollback_id)
    return done
