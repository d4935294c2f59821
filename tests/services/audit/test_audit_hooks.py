"""Each lifecycle change leaves its audit record, by the right actor, in the change's transaction:
alerts acknowledged and resolved through the API, alerts opened by the monitor, deployments, and
model registration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from services.audit import actions
from services.audit import service as audit
from services.core.db import session_scope
from services.core.models import AuditRecord
from services.core.settings import Settings
from services.monitoring.alerting import open_alert_if_due
from services.monitoring.specs import DriftSpec
from services.serving.service import deploy_champion
from tests.conftest import enqueuer_for
from tests.services.alerts.conftest import seed_alert
from tests.services.alerts.test_dedup_and_races import _drifted_window
from tests.services.audit.conftest import auth


def _audit(sessions: sessionmaker[Session]) -> list[dict[str, Any]]:
    with session_scope(sessions) as s:
        rows = s.scalars(select(AuditRecord).order_by(AuditRecord.id))
        return [
            {
                "actor": r.actor,
                "action": r.action,
                "entity": (r.entity_type, r.entity_id),
                "reason": r.reason,
                "payload": r.payload,
            }
            for r in rows
        ]


def _verified(sessions: sessionmaker[Session]) -> bool:
    with session_scope(sessions) as s:
        return audit.verify(s).ok


def test_acknowledge_and_resolve_through_the_api_are_audited(
    api: TestClient, sessions: sessionmaker[Session], keys: dict[str, str]
) -> None:
    alert_id = seed_alert(sessions)
    ack = api.post(
        f"/v1/alerts/{alert_id}/acknowledge",
        json={"note": "Looking at the scanner."},
        headers=auth(keys, "mlops_engineer"),
    )
    assert ack.status_code == 200, ack.text
    res = api.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(keys, "clinical_safety_officer"))
    assert res.status_code == 200, res.text
    # A refused transition (409) leaves no record: the request's transaction rolls back.
    again = api.post(f"/v1/alerts/{alert_id}/resolve", headers=auth(keys, "mlops_engineer"))
    assert again.status_code == 409

    records = _audit(sessions)
    assert [(r["actor"], r["action"], r["entity"], r["reason"]) for r in records] == [
        (
            "test-mlops_engineer",
            "alert.acknowledged",
            ("alert", str(alert_id)),
            "Looking at the scanner.",
        ),
        ("test-clinical_safety_officer", "alert.resolved", ("alert", str(alert_id)), None),
    ]
    assert records[0]["payload"]["role"] == "mlops_engineer"
    assert records[0]["payload"]["state"] == "acknowledged"
    assert records[1]["payload"]["site"] == "north"
    assert _verified(sessions)

    listed = api.get(
        "/v1/audit",
        params={"entity_type": "alert", "entity_id": str(alert_id)},
        headers=auth(keys, "auditor"),
    ).json()
    assert [r["action"] for r in listed["items"]] == ["alert.acknowledged", "alert.resolved"]


def test_the_monitor_opening_an_alert_is_audited_as_monitoring(
    sessions: sessionmaker[Session], settings: Settings
) -> None:
    with session_scope(sessions) as s:
        _drifted_window(s, 0)
    # Rolled back with the monitor's transaction: no alert, no record.
    s = sessions()
    try:
        window = _drifted_window(s, 1)
        assert open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=window
        )
        s.rollback()
    finally:
        s.close()
    assert _audit(sessions) == []

    with session_scope(sessions) as s:
        _drifted_window(s, 1)
        window = _drifted_window(s, 2)
        alert = open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=window
        )
        assert alert is not None
        alert_id = alert.id
    [record] = _audit(sessions)
    assert (record["actor"], record["action"], record["entity"]) == (
        "monitoring",
        "alert.opened",
        ("alert", str(alert_id)),
    )
    assert record["payload"]["site"] == "south"
    assert record["payload"]["window_index"] == 2
    # The duplicate the dedup refuses leaves no record either.
    with session_scope(sessions) as s:
        again = open_alert_if_due(
            s, enqueuer=enqueuer_for(settings), spec=DriftSpec(), result=_drifted_window(s, 3)
        )
        assert again is None
    assert len(_audit(sessions)) == 1


def test_a_deployment_is_audited_with_its_actor_and_predecessor(
    sessions: sessionmaker[Session],
) -> None:
    with session_scope(sessions) as s:
        deploy_champion(
            s, model_name="cxr", model_version=1, mlflow_run_id="r1", triton_model="cxr"
        )
    with session_scope(sessions) as s:
        deploy_champion(
            s,
            model_name="cxr",
            model_version=2,
            mlflow_run_id="r2",
            triton_model="cxr",
            actor="cli:carol",
        )
    records = _audit(sessions)
    assert [(r["actor"], r["action"], r["entity"]) for r in records] == [
        ("system", "model.deployed", ("model_version", "cxr:1")),
        ("cli:carol", "model.deployed", ("model_version", "cxr:2")),
    ]
    assert records[1]["payload"]["previous_version"] == 1
    assert records[1]["payload"]["mlflow_run_id"] == "r2"
    assert _verified(sessions)


def test_registration_is_audited(sessions: sessionmaker[Session], tmp_path: Path) -> None:
    """A tiny real training run registered in the embedded MLflow store."""
    from pipelines.train import TrainConfig
    from services.registry.mlflow_registry import MlflowRegistry
    from services.registry.service import train_and_register

    registry = MlflowRegistry(f"sqlite:///{tmp_path / 'mlflow.db'}")
    with session_scope(sessions) as s:
        registered, _ = train_and_register(
            registry,
            model_name="cxr-audit",
            config=TrainConfig.tiny(),
            session=s,
            actor="cli:dave",
        )
    [record] = _audit(sessions)
    assert (record["actor"], record["action"], record["entity"]) == (
        "cli:dave",
        actions.MODEL_REGISTERED,
        ("model_version", f"cxr-audit:{registered.version}"),
    )
    assert record["payload"]["mlflow_run_id"] == registered.run_id
    assert record["payload"]["alias"] == "champion"
    assert set(record["payload"]["metrics"]) == set(registered.metrics)
    assert _verified(sessions)
