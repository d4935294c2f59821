"""When a monitor's windows call for an alert: the declared policy decides, and the alert is
opened through the alerts domain (one unresolved alert per (monitor, model, site) at most,
webhook outbox rows and the audit record in the same transaction)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from monitors.policy import WindowOutcome
from monitors.stats import format_p
from services.alerts import service as alerts
from services.audit import actions
from services.core.models import Alert, MonitorResult
from services.core.ports import Enqueuer
from services.events import repository as events
from services.monitoring import repository
from services.monitoring.specs import GLOBAL_SITE, DriftSpec, FairnessSpec, MonitorSpec


def drift_evidence(details: dict[str, Any]) -> list[str]:
    """Human-readable evidence, strongest first: the embedding test, then up to 4 columns."""
    parts = [
        f"embedding {name} {format_p(m['p_value'])}"
        for name, m in details.get("multivariate", {}).items()
        if m.get("drift")
    ]
    drifted = sorted(
        ((name, c) for name, c in details.get("columns", {}).items() if c.get("drift")),
        key=lambda item: item[1]["p_value"],
    )
    for name, c in drifted[:4]:
        new = c.get("details", {}).get("new_categories")
        extra = f" (new: {', '.join(map(str, new))})" if new else ""
        parts.append(f"{name} {c['test']} {format_p(c['p_value'])}{extra}")
    return parts


def _detail(spec: MonitorSpec, result: MonitorResult, significant: int, considered: int) -> str:
    where = "all sites" if result.site == GLOBAL_SITE else f"site '{result.site}'"
    head = (
        f"{significant} of the last {considered} windows of {result.n_current} studies "
        f"significant. Latest window {result.window_index}"
    )
    if isinstance(spec, DriftSpec):
        evidence = "; ".join(drift_evidence(result.details)) or "drift flagged"
        return f"Acquisition drift at {where}: {head}: {evidence}."
    d = result.details
    if isinstance(spec, FairnessSpec):
        w = d.get("worst") or {}
        return (
            f"Subgroup gap in {spec.metric} of '{spec.finding}' at {where}: group "
            f"{w.get('group')} trails the rest by {result.statistic:.3f} "
            f"(tolerated {spec.max_gap}), {format_p(result.p_value)}: {head}."
        )
    how = "estimated without labels" if spec.kind == "estimate" else "on labelled studies"
    return (
        f"{spec.metric} of '{spec.finding}' below {d['floor']:.3f} (baseline {d['baseline']:.3f} "
        f"- margin {spec.margin}) at {where}, {how}: {head}: {spec.metric} "
        f"{result.statistic:.3f}, {format_p(result.p_value)}."
    )


def open_alert_if_due(
    session: Session, *, enqueuer: Enqueuer, spec: MonitorSpec, result: MonitorResult
) -> Alert | None:
    """Open an alert when the monitor's policy fires on its recent windows (the policy decision
    is monitoring's; writing the alert, its webhooks and its audit record is
    :func:`services.alerts.service.open`'s, which also keeps one unresolved alert per key)."""
    if not result.drift:
        return None
    policy = spec.policy.policy()
    recent = repository.recent_results(
        session,
        monitor=result.monitor,
        model_name=result.model_name,
        site=result.site,
        limit=policy.persistence_m,
    )
    # A window's significance was decided when it was computed (multiplicity-corrected for
    # drift, by the interval for performance); the policy counts those decisions.
    history = [
        WindowOutcome(p_value=0.0 if r.drift else 1.0, label=f"window {r.window_index}")
        for r in reversed(recent)
    ]
    decision = policy.evaluate(history)
    if not decision.fire:
        return None
    return alerts.open(
        session,
        enqueuer=enqueuer,
        monitor=result.monitor,
        model_name=result.model_name,
        site=result.site,
        severity=decision.severity,
        detail=_detail(spec, result, decision.significant, decision.considered),
        result_id=result.id,
        opened_after_predictions=events.count(
            session, model_name=result.model_name, up_to_id=result.last_event_id
        ),
        actor=actions.ACTOR_MONITORING,
        context={"result_id": result.id, "window_index": result.window_index},
    )
