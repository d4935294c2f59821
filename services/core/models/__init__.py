"""SQLAlchemy ORM models: the system of record, in one place. One module per domain, named like
the ``services`` package that owns (writes) those tables; the architecture test checks that
only that domain's repository writes them. API schemas live in each domain's schemas.py.
Import from this package, not its modules."""

from services.core.models.alerts import Alert, WebhookDelivery, WebhookSubscription
from services.core.models.approvals import ApprovalDecision, ApprovalRequest
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
from services.core.models.change_protocols import ChangeProtocol
from services.core.models.events import PredictionEvent
from services.core.models.labels import GroundTruthLabel
from services.core.models.monitoring import Monitor, MonitorChange, MonitorResult
from services.core.models.promotion import Promotion
from services.core.models.retraining import Dossier, RetrainingRun
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
