"""Retraining runs: asked for by a person or by persistent monitor evidence, queued, trained on
the ``training`` queue, registered as the ``candidate``, judged in a dossier, handed to sign-off.

queued -> running -> succeeded | failed. At most one queued or running run per model (a second
request is a 409), serialized by a per-model advisory lock on PostgreSQL.

Transactions. :func:`request_run` and :func:`trigger_due_runs` are ordinary services: they
receive the caller's session and never commit; the caller enqueues the run with
:func:`enqueue_after_commit`, so a worker never sees a run that rolled back.
:func:`execute_run` is different by necessity: a run takes minutes, so it cannot hold one
transaction open; like a task wrapper, it owns one short unit of work per step (start, each
progress update, the candidate's registration, the dossier with its approval request, or the
failure).

Alert triggers use the protocol's persistence rule: an unresolved alert counts only when its
monitor has at least ``min_significant_windows`` significant windows for that site among the
last ``LOOKBACK_FACTOR * min_significant_windows`` windows. One noisy window never retrains a
model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy.orm import Session

from services.alerts import repository as alerts
from services.audit import actions
from services.audit.service import record
from services.change_protocols import service as protocols
from services.change_protocols.document import ChangeProtocolDocument, RetrainingPolicy
from services.core.db import advisory_lock
from services.core.enqueue import send_after_commit
from services.core.errors import ConflictError, NotFoundError, ValidationFailedError
from services.core.models import (
    Alert,
    Dossier,
    RetrainingRun,
    RetrainingState,
    Severity,
)
from services.core.ports import Enqueuer
from services.labels import repository as labels
from services.monitoring import repository as monitoring
from services.retraining import repository
from services.serving import repository as deployments
from services.serving.service import champion, spec_of

log = logging.getLogger(__name__)

Trigger = Literal["manual", "alert"]
TASK_NAME = "training.retrain"
CANDIDATE_ALIAS = "candidate"
#: Persistence look-back: k significant windows among the last ``LOOKBACK_FACTOR * k``.
LOOKBACK_FACTOR = 2
#: A queued run whose message was lost (broker restart) is sent again after this long.
RESEND_AFTER = timedelta(minutes=30)
#: A run still running this long after it started is taken as abandoned by a lost worker.
ABANDON_AFTER = timedelta(hours=12)


@dataclass(frozen=True)
class RunOptions:
    """What a requester may set; anything left ``None`` comes from the protocol's policy.

    ``holdout_fraction``: newest share of labelled events kept for the dossier (never trained
    on). ``robustness_studies``: synthetic studies for the robustness section.
    """

    epochs: int | None = None
    seed: int | None = None
    holdout_fraction: float = 0.3
    robustness_studies: int = 300
    max_events: int = 20_000
    batch_size: int = 64
    lr: float = 1e-2

    def __post_init__(self) -> None:
        problems = []
        if self.epochs is not None and not 1 <= self.epochs <= 500:
            problems.append("epochs must be 1 to 500")
        if self.seed is not None and not 0 <= self.seed < 2**31:
            problems.append("seed must be 0 to 2**31 - 1")
        if not 0.05 <= self.holdout_fraction <= 0.8:
            problems.append("holdout_fraction must be 0.05 to 0.8")
        if not 20 <= self.robustness_studies <= 5000:
            problems.append("robustness_studies must be 20 to 5000")
        if self.max_events < 20 or not 2 <= self.batch_size <= 4096 or not 0 < self.lr <= 1:
            problems.append("max_events >= 20, batch_size 2 to 4096, lr in (0, 1]")
        if problems:
            raise ValidationFailedError("Invalid retraining options: " + "; ".join(problems))


# --- lookups -----------------------------------------------------------------------------------


def get(session: Session, run_id: int, *, for_update: bool = False) -> RetrainingRun:
    run = repository.get_run(session, run_id, for_update=for_update)
    if run is None:
        raise NotFoundError(f"No retraining run {run_id}; list them with GET /v1/retraining.")
    return run


list_runs = repository.list_runs
active_run = repository.active_run


def dossier_of(session: Session, run_id: int) -> Dossier | None:
    return repository.dossier_of_run(session, run_id)


def _lock_model(session: Session, model_name: str) -> None:
    """Serialize run requests per model until the transaction ends."""
    advisory_lock(session, f"radwatch.retraining:{model_name}")


# --- requesting --------------------------------------------------------------------------------


def resolved_params(
    policy: RetrainingPolicy, finding: str, reason: str, options: RunOptions
) -> dict[str, Any]:
    """The run's full parameter set: the requester's options over the protocol's policy."""
    return {
        "reason": reason,
        "finding": finding,
        "epochs": options.epochs if options.epochs is not None else policy.epochs,
        "seed": options.seed if options.seed is not None else policy.seed,
        "replay_fraction": policy.replay_fraction,
        "holdout_fraction": options.holdout_fraction,
        "robustness_studies": options.robustness_studies,
        "max_events": options.max_events,
        "batch_size": options.batch_size,
        "lr": options.lr,
    }


def request_run(
    session: Session,
    *,
    model_name: str,
    trigger: Trigger,
    requested_by: str,
    reason: str,
    alert_ids: Sequence[int] = (),
    options: RunOptions | None = None,
    now: datetime | None = None,
) -> RetrainingRun:
    """Queue a retraining run of the model's champion and audit it (the caller commits, then
    enqueues with :func:`enqueue_after_commit`).

    404 for a model with no deployed champion, 409 while another run of the model is queued or
    running, 422 when fewer labelled events than the policy's ``min_labelled_events`` exist.
    """
    text_reason = (reason or "").strip()
    if not 3 <= len(text_reason) <= 2000:
        raise ValidationFailedError("A retraining request needs a reason of 3 to 2,000 characters.")
    opts = options or RunOptions()
    champ = champion(session, model_name)
    kind = spec_of(champ).retraining.kind
    if kind == "none":
        raise ValidationFailedError(
            f"'{model_name}' version {champ.model_version} declares retraining 'none': radwatch "
            "does not train it. Register the next version yourself (`radwatch models import`) "
            f"and have it judged (POST /v1/models/{model_name}/candidates)."
        )
    claim_model(session, model_name)
    protocol_row, protocol = protocols.current(
        session, model_name, actor=requested_by, spec=spec_of(champ)
    )
    policy, finding = protocol.retraining, protocol.acceptance.finding
    labelled = labels.count_labelled(
        session, model_name=model_name, version=champ.model_version, finding=finding
    )
    if labelled < policy.min_labelled_events:
        raise ValidationFailedError(
            f"'{model_name}' version {champ.model_version} has {labelled} events labelled for "
            f"'{finding}'; its change protocol (v{protocol_row.version}) needs at least "
            f"{policy.min_labelled_events} to retrain. Send more labels (POST /v1/labels).",
            details={"labelled": labelled, "required": policy.min_labelled_events},
        )
    params = resolved_params(policy, finding, text_reason, opts)
    return queue_run(
        session,
        model_name=model_name,
        parent_version=champ.model_version,
        trigger=trigger,
        requested_by=requested_by,
        params=params,
        lineage={
            "parent_version": champ.model_version,
            "trigger": trigger,
            "trigger_alert_ids": sorted(int(a) for a in alert_ids),
            "protocol_version": protocol_row.version,
            "labelled_events_at_request": labelled,
        },
        audit={"epochs": params["epochs"]},
        seed=int(params["seed"]),
        created_at=now,
    )


def claim_model(session: Session, model_name: str) -> None:
    """Serialize requests for the model until the transaction ends; 409 while one of its runs
    is queued or running."""
    _lock_model(session, model_name)
    running = active_run(session, model_name)
    if running is not None:
        raise ConflictError(
            f"Retraining run {running.id} of '{model_name}' is already {running.state}; wait "
            f"for it (GET /v1/retraining/{running.id}) before asking for another."
        )


def queue_run(
    session: Session,
    *,
    model_name: str,
    parent_version: int,
    trigger: Trigger,
    requested_by: str,
    params: dict[str, Any],
    lineage: dict[str, Any],
    audit: Mapping[str, Any],
    seed: int = 0,
    candidate_version: int | None = None,
    created_at: datetime | None = None,
) -> RetrainingRun:
    """Add a queued run (``params["reason"]`` is its audited reason) and audit the request
    with the lineage's trigger and protocol version plus ``audit``."""
    run = RetrainingRun(
        model_name=model_name,
        parent_version=parent_version,
        state=RetrainingState.QUEUED,
        trigger=trigger,
        requested_by=requested_by,
        seed=seed,
        params=params,
        lineage=lineage,
        candidate_version=candidate_version,
        progress=0.0,
        message="queued",
        created_at=created_at or datetime.now(UTC),
    )
    repository.add_run(session, run)
    record(
        session,
        actor=requested_by,
        action=actions.RETRAINING_REQUESTED,
        entity_type=actions.RETRAINING_RUN,
        entity_id=run.id,
        reason=str(params["reason"]),
        payload={
            "model": model_name,
            "parent_version": parent_version,
            "trigger": trigger,
            "trigger_alert_ids": lineage.get("trigger_alert_ids", []),
            "protocol_version": lineage.get("protocol_version"),
            "seed": seed,
            **audit,
        },
    )
    return run


# --- alert triggers ----------------------------------------------------------------------------


def _policy_of(session: Session, model_name: str) -> ChangeProtocolDocument:
    row = protocols.latest(session, model_name)
    return ChangeProtocolDocument() if row is None else protocols.parse(row.document)


def persistent_alerts(
    session: Session, *, model_name: str, policy: RetrainingPolicy
) -> list[tuple[Alert, int]]:
    """Unresolved alerts of the model that meet the policy's monitor, severity and persistence
    rules, each with its count of significant windows in the look-back."""
    out: list[tuple[Alert, int]] = []
    k = policy.min_significant_windows
    for alert in alerts.unresolved(session, model_name):
        if policy.monitors and alert.monitor not in policy.monitors:
            continue
        if Severity.rank_of(alert.severity) < Severity(policy.min_severity).rank:
            continue
        windows = monitoring.recent_results(
            session,
            monitor=alert.monitor,
            model_name=model_name,
            site=alert.site,
            limit=LOOKBACK_FACTOR * k,
        )
        significant = sum(1 for w in windows if w.drift)
        if significant >= k:
            out.append((alert, significant))
    return out


def trigger_due_runs(session: Session, *, now: datetime | None = None) -> list[RetrainingRun]:
    """Request an ``alert`` run for every model whose protocol allows it and whose evidence is
    persistent, outside the cooldown, with enough labels. Returns the runs created (the caller
    commits, then enqueues them)."""
    at = now or datetime.now(UTC)
    created: list[RetrainingRun] = []
    for model_name in deployments.model_names(session):
        protocol = _policy_of(session, model_name)
        policy = protocol.retraining
        if not policy.enabled or active_run(session, model_name) is not None:
            continue
        last = repository.last_run_at(session, model_name)
        if last is not None and at - last < timedelta(hours=policy.cooldown_hours):
            continue
        champ = champion(session, model_name)
        if spec_of(champ).retraining.kind == "none":
            continue  # its owner registers candidates; the alert stays for people to read
        evidence = persistent_alerts(session, model_name=model_name, policy=policy)
        if not evidence:
            continue
        finding = protocol.acceptance.finding
        labelled = labels.count_labelled(
            session, model_name=model_name, version=champ.model_version, finding=finding
        )
        if labelled < policy.min_labelled_events:
            log.info(
                "retraining of %s is due on alerts %s but has %d/%d labelled events",
                model_name,
                [a.id for a, _ in evidence],
                labelled,
                policy.min_labelled_events,
            )
            continue
        summary = ", ".join(
            f"alert {a.id} ({a.monitor} @ {a.site}, {n} significant windows)" for a, n in evidence
        )
        created.append(
            request_run(
                session,
                model_name=model_name,
                trigger="alert",
                requested_by=actions.ACTOR_MONITORING,
                reason=f"Persistent monitor evidence: {summary}.",
                alert_ids=[a.id for a, _ in evidence],
                now=at,
            )
        )
    return created


def stale_queued(session: Session, *, now: datetime | None = None) -> list[RetrainingRun]:
    """Queued runs whose task message may have been lost (Redis may lose its contents); marks
    when each was re-sent so it is sent at most once per :data:`RESEND_AFTER`."""
    at = now or datetime.now(UTC)
    out: list[RetrainingRun] = []
    for run in repository.in_state(session, RetrainingState.QUEUED):
        sent = run.lineage.get("resent_at")
        last = datetime.fromisoformat(sent) if sent else run.created_at
        if at - last >= RESEND_AFTER:
            run.lineage = {**run.lineage, "resent_at": at.isoformat()}
            out.append(run)
    return out


def fail_abandoned(session: Session, *, now: datetime | None = None) -> list[RetrainingRun]:
    """Mark runs still ``running`` :data:`ABANDON_AFTER` after they started as failed: their
    worker died (a redelivered message skips a run that is not queued), and a run stuck in
    ``running`` would block every new request for the model."""
    at = now or datetime.now(UTC)
    out: list[RetrainingRun] = []
    for run in repository.in_state(session, RetrainingState.RUNNING):
        if run.started_at is not None and at - run.started_at >= ABANDON_AFTER:
            hours = ABANDON_AFTER.total_seconds() / 3600
            mark_failed(
                session,
                run,
                actor=actions.ACTOR_SYSTEM,
                message=f"No result {hours:g} h after it started; its worker was probably lost. "
                "Request a new run.",
            )
            out.append(run)
    return out


# --- enqueueing after commit -------------------------------------------------------------------


def enqueue_after_commit(
    session: Session, *, enqueuer: Enqueuer, queue: str, run_ids: Iterable[int]
) -> None:
    """Send ``training.retrain`` for each run once ``session`` commits; nothing on rollback.

    A lost message leaves the run queued; the beat task re-sends it (:func:`stale_queued`), and
    the task ignores a run that is no longer queued, so a duplicate is harmless.
    """
    for run_id in run_ids:
        send_after_commit(session, enqueuer, TASK_NAME, [int(run_id)], queue=queue)


# --- state changes of a run (each in the caller's transaction) ---------------------------------


def mark_running(session: Session, run: RetrainingRun, *, actor: str) -> None:
    run.state, run.started_at = RetrainingState.RUNNING, datetime.now(UTC)
    run.progress, run.message = 0.0, None
    session.flush()
    record(
        session,
        actor=actor,
        action=actions.RETRAINING_STARTED,
        entity_type=actions.RETRAINING_RUN,
        entity_id=run.id,
        payload={"model": run.model_name, "parent_version": run.parent_version},
    )


def mark_failed(session: Session, run: RetrainingRun, *, actor: str, message: str) -> None:
    run.state, run.finished_at, run.message = (
        RetrainingState.FAILED,
        datetime.now(UTC),
        message[:500],
    )
    session.flush()
    record(
        session,
        actor=actor,
        action=actions.RETRAINING_FAILED,
        entity_type=actions.RETRAINING_RUN,
        entity_id=run.id,
        payload={
            "model": run.model_name,
            "parent_version": run.parent_version,
            "candidate_version": run.candidate_version,
            "message": run.message,
        },
    )


def mark_succeeded(
    session: Session, run: RetrainingRun, *, actor: str, dossier_id: int, passed: bool
) -> None:
    run.state, run.finished_at, run.progress = RetrainingState.SUCCEEDED, datetime.now(UTC), 1.0
    run.message = f"candidate version {run.candidate_version}; dossier {dossier_id} " + (
        "passed its criteria" if passed else "failed its criteria"
    )
    session.flush()
    record(
        session,
        actor=actor,
        action=actions.RETRAINING_SUCCEEDED,
        entity_type=actions.RETRAINING_RUN,
        entity_id=run.id,
        payload={
            "model": run.model_name,
            "parent_version": run.parent_version,
            "candidate_version": run.candidate_version,
            "mlflow_run_id": run.mlflow_run_id,
            "data_snapshot_sha256": run.lineage.get("data_snapshot_sha256"),
            "dossier_id": dossier_id,
            "criteria_passed": passed,
        },
    )


def record_candidate(
    session: Session,
    run: RetrainingRun,
    *,
    actor: str,
    version: int,
    mlflow_run_id: str,
    lineage: Mapping[str, Any],
) -> None:
    run.candidate_version, run.mlflow_run_id = version, mlflow_run_id
    run.lineage = {**run.lineage, **lineage}
    session.flush()
    record(
        session,
        actor=actor,
        action=actions.CANDIDATE_REGISTERED,
        entity_type=actions.MODEL_VERSION,
        entity_id=actions.model_version_id(run.model_name, version),
        payload={
            "model": run.model_name,
            "version": version,
            "parent_version": run.parent_version,
            "retraining_run_id": run.id,
            "mlflow_run_id": mlflow_run_id,
            "alias": "candidate",
            "data_snapshot_sha256": lineage.get("data_snapshot_sha256"),
        },
    )


# --- running a run -----------------------------------------------------------------------------

Progress = Callable[[str, int, int], None]
#: Share of the run's overall progress (0..1) that each stage spans.
_STAGES: dict[str, tuple[float, float]] = {
    "loading": (0.0, 0.05),
    "replay": (0.05, 0.25),
    "training": (0.25, 0.75),
    "profiling": (0.75, 0.8),
    "registering": (0.8, 0.85),
    "evaluating": (0.85, 0.99),
}
