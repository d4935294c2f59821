"""Declared monitors: create, update, disable and enable them, with every change kept.

A monitor row holds the current declaration (``spec``, ``active``, ``version``); each change also
appends a ``monitor_changes`` row with the full spec at that version, who made it and when, so
the history of what was watched, and how strictly, can be audited after the fact.
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.core.errors import (
    ConflictError,
    NotFoundError,
    ValidationFailedError,
    invalid,
    problems_of,
)
from services.core.models import Monitor, MonitorChange, utcnow
from services.core.settings import Settings
from services.monitoring import repository
from services.monitoring.specs import DriftSpec, MonitorSpec, PolicySpec, WindowSpec

_SPEC: TypeAdapter[Any] = TypeAdapter(MonitorSpec)

#: Name of the drift monitor every newly deployed model gets unless it already has monitors.
DEFAULT_DRIFT = "acquisition_drift"


def parse_spec(raw: Any) -> MonitorSpec:
    try:
        spec: MonitorSpec = _SPEC.validate_python(raw)
    except ValidationError as exc:
        problems = problems_of(
            exc.errors(include_url=False), prefix="spec.", default="spec.kind", loc=_without_tag
        )
        raise invalid("Invalid monitor spec", problems, keep=len(problems)) from None
    return spec


_KINDS = ("drift", "performance", "estimate", "fairness")


def _without_tag(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """pydantic puts the discriminator value first ("drift.window.size"); users wrote no such
    level, so the message names the field as they wrote it."""
    return loc[1:] if loc and loc[0] in _KINDS else loc


def spec_of(monitor: Monitor) -> MonitorSpec:
    return parse_spec(monitor.spec)


def _record(session: Session, monitor: Monitor, change: str, actor: str) -> None:
    repository.add_change(
        session,
        MonitorChange(
            monitor_id=monitor.id,
            version=monitor.version,
            change=change,
            spec=monitor.spec,
            active=monitor.active,
            changed_by=actor,
        ),
    )


def create(
    session: Session, *, model_name: str, name: str, spec: MonitorSpec, actor: str
) -> Monitor:
    monitor = Monitor(
        model_name=model_name,
        name=name,
        kind=spec.kind,
        spec=spec.model_dump(mode="json"),
        active=True,
        version=1,
        updated_by=actor,
    )
    try:
        with session.begin_nested():
            repository.add_monitor(session, monitor)
    except IntegrityError:
        raise ConflictError(
            f"Model '{model_name}' already has a monitor named '{name}'; update it "
            "(PATCH /v1/monitors/{id}) or choose another name."
        ) from None
    _record(session, monitor, "created", actor)
    return monitor


def get(session: Session, monitor_id: int, *, for_update: bool = False) -> Monitor:
    monitor = repository.get_monitor(session, monitor_id, for_update=for_update)
    if monitor is None:
        raise NotFoundError(f"No monitor with id {monitor_id}; list them with GET /v1/monitors.")
    return monitor


def update(
    session: Session,
    monitor_id: int,
    *,
    actor: str,
    spec: MonitorSpec | None = None,
    active: bool | None = None,
) -> Monitor:
    """Change the spec and/or the active flag; a no-op change records nothing."""
    monitor = get(session, monitor_id, for_update=True)
    changes = []
    if spec is not None:
        if spec.kind != monitor.kind:
            raise ValidationFailedError(
                f"Monitor {monitor_id} is a '{monitor.kind}' monitor; its kind cannot change to "
                f"'{spec.kind}'. Create a new monitor instead."
            )
        dumped = spec.model_dump(mode="json")
        if dumped != monitor.spec:
            monitor.spec = dumped
            changes.append("updated")
    if active is not None and active != monitor.active:
        monitor.active = active
        changes.append("enabled" if active else "disabled")
    if not changes:
        return monitor
    monitor.version += 1
    monitor.updated_at = utcnow()
    monitor.updated_by = actor
    session.flush()
    _record(session, monitor, "+".join(changes), actor)
    return monitor


def list_monitors(
    session: Session, *, model_name: str | None = None, active: bool | None = None
) -> list[Monitor]:
    return repository.list_monitors(session, model_name=model_name, active=active)


def history(session: Session, monitor_id: int) -> list[MonitorChange]:
    get(session, monitor_id)
    return repository.changes(session, monitor_id)


def ensure_default_drift(
    session: Session, *, model_name: str, settings: Settings, embeddings: bool = True
) -> None:
    """Give a newly deployed model the acquisition-drift monitor of the settings (window,
    alpha, persistence, permutations), unless it already has monitors (declared ones are never
    overridden). ``embeddings``: whether the model has an embedding output to test."""
    if list_monitors(session, model_name=model_name):
        return
    spec = DriftSpec(
        embeddings=embeddings,
        permutations=settings.monitor_permutations,
        window=WindowSpec(type="count", size=settings.monitor_window),
        policy=PolicySpec(
            alpha=settings.monitor_alpha,
            persistence_k=settings.monitor_persistence_k,
            persistence_m=settings.monitor_persistence_m,
        ),
    )
    create(session, model_name=model_name, name=DEFAULT_DRIFT, spec=spec, actor="system:deploy")
