"""SQLAlchemy ORM models: the system of record, in one place (one module per domain's tables).
API schemas live in each domain's schemas.py. Import from this package, not its modules."""

from services.core.models.alerts import Alert, WebhookDelivery, WebhookSubscription
from services.core.models.audit import AuditRecord
from services.core.models.auth import ApiKey, User
from services.core.models.base import (
    AlertState,
    ApprovalState,
    Base,
    DeliveryStatus,
    DeploymentRole,
    PromotionKind,
    PromotionState,
    RetrainingState,
    Role,
    RoutingMode,
    Severity,
    UtcDateTime,
    as_utc,
    utcnow,
)
from services.core.models.events import GroundTruthLabel, PredictionEvent
from services.core.models.lifecycle import (
    ApprovalDecision,
    ApprovalRequest,
    ChangeProtocol,
    Dossier,
    Promotion,
    RetrainingRun,
)
from services.core.models.monitoring import Monitor, MonitorChange, MonitorResult
from services.core.models.serving import Deployment, ModelRouting, ShadowPrediction

__all__ = [
    "Alert",
    "AlertState",
    "ApiKey",
    "ApprovalDecision",
    "ApprovalRequest",
    "ApprovalState",
    "AuditRecord",
    "Base",
    "ChangeProtocol",
    "DeliveryStatus",
    "Deployment",
    "DeploymentRole",
    "Dossier",
    "GroundTruthLabel",
    "ModelRouting",
    "Monitor",
    "MonitorChange",
    "MonitorResult",
    "PredictionEvent",
    "Promotion",
    "PromotionKind",
    "PromotionState",
    "RetrainingRun",
    "RetrainingState",
    "Role",
    "RoutingMode",
    "Severity",
    "ShadowPrediction",
    "User",
    "UtcDateTime",
    "WebhookDelivery",
    "WebhookSubscription",
    "as_utc",
    "utcnow",
]
