"""SQLAlchemy ORM models: the system of record. API schemas live in each domain's schemas.py."""

from __future__ import annotations

import enum
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigIntPK = BigInteger().with_variant(Integer(), "sqlite")


def _enum_values(enum_cls: type[enum.Enum]) -> list[str]:
    return [str(m.value) for m in enum_cls]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: DateTime(timezone=True),
    }


class Role(enum.StrEnum):
    MLOPS_ENGINEER = "mlops_engineer"
    CLINICAL_SAFETY_OFFICER = "clinical_safety_officer"
    AUDITOR = "auditor"


class AlertState(enum.StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; keys are 256-bit random tokens, so a
    fast hash is enough (no password-style stretching is needed for high-entropy secrets)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=32, values_callable=_enum_values)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Deployment(Base):
    """A model version that is (or was) served: the link between MLflow and Triton."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("model_name", "model_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    mlflow_run_id: Mapped[str] = mapped_column(String(64))
    triton_model: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32), default="champion")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    operating_threshold: Mapped[float] = mapped_column(Float, default=0.5)
    #: Length of the embeddings its events carry; ingestion rejects other lengths. ``None`` for
    #: deployments registered before the column existed (no check).
    embedding_dim: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PredictionEvent(Base):
    """One prediction. Identifiers are pseudonyms; the embedding is float32 little-endian bytes."""

    __tablename__ = "prediction_events"
    __table_args__ = (Index("ix_events_model_site_id", "model_name", "site", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    study_pid: Mapped[str] = mapped_column(String(32), index=True)
    patient_pid: Mapped[str | None] = mapped_column(String(32))
    site: Mapped[str] = mapped_column(String(64))
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    manufacturer_model: Mapped[str | None] = mapped_column(String(64))
    view_position: Mapped[str | None] = mapped_column(String(8))
    kvp: Mapped[float | None] = mapped_column(Float)
    sex: Mapped[str | None] = mapped_column(String(8))
    age: Mapped[float | None] = mapped_column(Float)
    race_ethnicity: Mapped[str | None] = mapped_column(String(64))
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    image_stats: Mapped[dict[str, Any]] = mapped_column(JSON)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    #: When the producer ran inference (its clock); ``created_at`` is when radwatch stored it.
    occurred_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class GroundTruthLabel(Base):
    """A ground-truth label for one finding of one study, as reported by one source.

    Labels arrive days or weeks after the prediction, or before it: they join events by the
    pseudonymised study id at query time, so the order of arrival does not matter. Rows are never
    updated: a correction is a new row with a later ``reported_at``, and the latest one wins.
    The unique key makes a re-sent label a no-op.
    """

    __tablename__ = "ground_truth_labels"
    __table_args__ = (
        UniqueConstraint("study_pid", "finding", "source", "reported_at"),
        Index("ix_labels_study_finding", "study_pid", "finding"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    study_pid: Mapped[str] = mapped_column(String(32))
    finding: Mapped[str] = mapped_column(String(64))
    label: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(64))
    reported_at: Mapped[datetime] = mapped_column()
    received_at: Mapped[datetime] = mapped_column(default=utcnow)


class MonitorResult(Base):
    """One computed window of one monitor. The unique key makes a window computed exactly once."""

    __tablename__ = "monitor_results"
    __table_args__ = (UniqueConstraint("monitor", "model_name", "site", "window_index"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor: Mapped[str] = mapped_column(String(64))
    #: The declared monitor (``monitors.id``); ``monitor`` is its name. ``site`` is ``"*"`` for a
    #: global monitor. ``window_start``/``window_end`` are set for time windows.
    monitor_id: Mapped[int | None] = mapped_column(BigInteger, default=None, index=True)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[int] = mapped_column(Integer)
    site: Mapped[str] = mapped_column(String(64))
    window_index: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[datetime | None] = mapped_column(default=None)
    window_end: Mapped[datetime | None] = mapped_column(default=None)
    first_event_id: Mapped[int] = mapped_column(BigInteger)
    last_event_id: Mapped[int] = mapped_column(BigInteger)
    n_current: Mapped[int] = mapped_column(Integer)
    n_reference: Mapped[int] = mapped_column(Integer)
    statistic: Mapped[float] = mapped_column(Float)
    p_value: Mapped[float] = mapped_column(Float)
    drift: Mapped[bool] = mapped_column(Boolean)
    details: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Alert(Base):
    """An alert and its lifecycle: open -> acknowledged -> resolved (open -> resolved is allowed;
    nothing goes backwards).

    At most one *unresolved* alert per (monitor, model, site): a partial unique index enforces the
    de-duplication even when two workers race. An acknowledged alert still holds the key, because
    acknowledged means someone is working on the problem; a new alert for the same key would be a
    duplicate page. Only resolving frees the key, so a problem that comes back after it was
    resolved opens a fresh alert.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index(
            "uq_alerts_one_unresolved",
            "monitor",
            "model_name",
            "site",
            unique=True,
            postgresql_where=text("state <> 'resolved'"),
            sqlite_where=text("state <> 'resolved'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    site: Mapped[str] = mapped_column(String(64))
    state: Mapped[AlertState] = mapped_column(
        Enum(AlertState, native_enum=False, length=16, values_callable=_enum_values),
        default=AlertState.OPEN,
    )
    severity: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str] = mapped_column(Text)
    result_id: Mapped[int] = mapped_column(ForeignKey("monitor_results.id"))
    opened_after_predictions: Mapped[int] = mapped_column(BigInteger)
    opened_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Who acknowledged or resolved it: the API key's name (as shown in ``radwatch keys list``)
    #: and id. The name is copied so the record survives a key being renamed or revoked.
    acknowledged_at: Mapped[datetime | None] = mapped_column(default=None)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), default=None)
    acknowledged_by_key_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    acknowledged_note: Mapped[str | None] = mapped_column(Text, default=None)
    resolved_at: Mapped[datetime | None] = mapped_column(default=None)
    resolved_by: Mapped[str | None] = mapped_column(String(128), default=None)
    resolved_by_key_id: Mapped[int | None] = mapped_column(BigInteger, default=None)
    resolved_note: Mapped[str | None] = mapped_column(Text, default=None)


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class WebhookSubscription(Base):
    """A receiver of alert events. The secret is stored in clear because it is the HMAC key that
    signs every delivery (a hash could not sign); it is shown once, when the subscription is
    created, and never returned by the API again."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    #: ``warning`` receives warning and critical alerts, ``critical`` only critical ones.
    min_severity: Mapped[str] = mapped_column(String(16), default="warning")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one subscription: the outbox row.

    It is written in the same transaction as the alert change, so an event is never announced for
    a change that rolled back, and never lost for one that committed. A worker claims due rows
    (``status = 'pending' AND next_attempt_at <= now``), sends them, and records the outcome;
    ``attempts`` doubles as the claim's fencing token. The partial index holds only pending rows,
    so the sweep stays cheap however many delivered rows pile up.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
            sqlite_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_deliveries_alert", "alert_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    alert_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"))
    event: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[DeliveryStatus] = mapped_column(
        Enum(DeliveryStatus, native_enum=False, length=16, values_callable=_enum_values),
        default=DeliveryStatus.PENDING,
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_status_code: Mapped[int | None] = mapped_column(Integer, default=None)
    #: Short and secret-free: an HTTP status or an exception class name, never a response body.
    last_error: Mapped[str | None] = mapped_column(String(200), default=None)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Monitor(Base):
    """A declared monitor of one model (see :mod:`services.monitoring.specs` for ``spec``).

    Only the current declaration lives here; every version is also in ``monitor_changes``.
    """

    __tablename__ = "monitors"
    __table_args__ = (UniqueConstraint("model_name", "name"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_by: Mapped[str] = mapped_column(String(128))


class MonitorChange(Base):
    """One version of a monitor's declaration: created, updated, disabled or enabled."""

    __tablename__ = "monitor_changes"
    __table_args__ = (UniqueConstraint("monitor_id", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    monitor_id: Mapped[int] = mapped_column(ForeignKey("monitors.id"))
    version: Mapped[int] = mapped_column(Integer)
    change: Mapped[str] = mapped_column(String(32))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    active: Mapped[bool] = mapped_column(Boolean)
    changed_by: Mapped[str] = mapped_column(String(128))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Lifecycle: change protocols, retraining, dossiers, sign-off, promotion, audit -------------


class User(Base):
    """A person who signs in to the web pages and re-authenticates to sign a decision.

    API keys stay the machine credential; a user's name is the identity that the four-eyes rule
    compares, so an API key acting for a person carries the same name. The password is stored as
    a salted scrypt hash (``scrypt$n$r$p$salt$hash``): passwords are low-entropy, so unlike API
    keys they need a deliberately slow hash.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=32, values_callable=_enum_values)
    )
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)


class ChangeProtocol(Base):
    """One version of a model's change protocol (a PCCP-style document, see
    :mod:`services.lifecycle.protocol`). Versions are never edited: a change is a new version."""

    __tablename__ = "change_protocols"
    __table_args__ = (UniqueConstraint("model_name", "version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class RetrainingRun(Base):
    """A retraining run: queued -> running -> succeeded | failed. ``lineage`` holds what the MLflow
    run records too (parent version, data snapshot hash, code version, trigger alert ids)."""

    __tablename__ = "retraining_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    parent_version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="queued")
    trigger: Mapped[str] = mapped_column(String(16))
    requested_by: Mapped[str] = mapped_column(String(128))
    seed: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    lineage: Mapped[dict[str, Any]] = mapped_column(JSON)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(Text, default=None)
    candidate_version: Mapped[int | None] = mapped_column(Integer, default=None)
    mlflow_run_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class Dossier(Base):
    """The evaluation dossier of one candidate against one change-protocol version."""

    __tablename__ = "dossiers"
    __table_args__ = (Index("ix_dossiers_candidate", "model_name", "candidate_version"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int] = mapped_column(Integer)
    retraining_run_id: Mapped[int | None] = mapped_column(
        ForeignKey("retraining_runs.id"), default=None
    )
    protocol_version: Mapped[int] = mapped_column(Integer)
    passed: Mapped[bool] = mapped_column(Boolean)
    document: Mapped[dict[str, Any]] = mapped_column(JSON)
    html: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ApprovalRequest(Base):
    """pending -> approved | rejected | withdrawn | expired. At most one pending request per
    candidate (partial unique index)."""

    __tablename__ = "approval_requests"
    __table_args__ = (
        Index(
            "uq_approval_one_pending",
            "model_name",
            "candidate_version",
            unique=True,
            postgresql_where=text("state = 'pending'"),
            sqlite_where=text("state = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    dossier_id: Mapped[int] = mapped_column(ForeignKey("dossiers.id"))
    state: Mapped[str] = mapped_column(String(16), default="pending")
    approver_role: Mapped[str] = mapped_column(String(32))
    required_approvals: Mapped[int] = mapped_column(Integer)
    criteria_passed: Mapped[bool] = mapped_column(Boolean)
    #: Everyone who triggered or trained the candidate: none of them may approve it.
    conflicted: Mapped[dict[str, Any]] = mapped_column(JSON)
    requested_by: Mapped[str] = mapped_column(String(128))
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    decided_at: Mapped[datetime | None] = mapped_column(default=None)


class ApprovalDecision(Base):
    """One signed decision on a request. ``signature`` is the SHA-256 of the signed content
    (request, candidate, decision, reason, signer, time), so the meaning of the signature is
    bound to the record (21 CFR 11.70 style)."""

    __tablename__ = "approval_decisions"
    __table_args__ = (UniqueConstraint("request_id", "approver"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("approval_requests.id"))
    approver: Mapped[str] = mapped_column(String(128))
    decision: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    override: Mapped[bool] = mapped_column(Boolean, default=False)
    reauth: Mapped[str] = mapped_column(String(16))
    signature: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime] = mapped_column(default=utcnow)


class ModelRouting(Base):
    """How the gateway routes one model's traffic. One row per model, switched in one UPDATE so
    that routing never shows a half-done change. ``mode`` is ``champion``, ``shadow`` (the
    candidate gets a mirrored copy, never returned) or ``canary`` (``canary_share`` of requests
    get the candidate's answer)."""

    __tablename__ = "model_routing"

    model_name: Mapped[str] = mapped_column(String(128), primary_key=True)
    champion_version: Mapped[int] = mapped_column(Integer)
    previous_champion_version: Mapped[int | None] = mapped_column(Integer, default=None)
    candidate_version: Mapped[int | None] = mapped_column(Integer, default=None)
    mode: Mapped[str] = mapped_column(String(16), default="champion")
    canary_share: Mapped[float] = mapped_column(Float, default=0.0)
    generation: Mapped[int] = mapped_column(Integer, default=1)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Promotion(Base):
    """A promotion (shadow -> canary -> champion) or a rollback, with where it got to."""

    __tablename__ = "promotions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    model_name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(16))
    from_version: Mapped[int | None] = mapped_column(Integer, default=None)
    to_version: Mapped[int] = mapped_column(Integer)
    stage: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="in_progress")
    approval_request_id: Mapped[int | None] = mapped_column(
        ForeignKey("approval_requests.id"), default=None
    )
    started_by: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: When it entered its current stage: the rollout plan's minutes count from here.
    stage_started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)


class AuditRecord(Base):
    """One entry of the append-only, hash-chained audit log (see :mod:`services.audit`).

    ``hash`` is SHA-256 over the canonical JSON of this record's content and ``prev_hash``, so
    editing, deleting or reordering any row breaks every hash after it.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id", "id"),
        Index("ix_audit_log_action", "action", "id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    #: Unique, so the chain cannot fork: two writers racing for the same predecessor collide
    #: here instead of both appending after it.
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class ShadowPrediction(Base):
    """The candidate's answer to a mirrored request during shadow: logged and compared with the
    champion's event (``event_id``), never returned, and kept out of ``prediction_events`` so
    monitors only ever see answers that reached a clinician."""

    __tablename__ = "shadow_predictions"
    __table_args__ = (Index("ix_shadow_model_version", "model_name", "candidate_version", "id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(128))
    candidate_version: Mapped[int] = mapped_column(Integer)
    champion_version: Mapped[int] = mapped_column(Integer)
    scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    champion_scores: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
