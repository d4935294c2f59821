"""When PostgreSQL becomes unreachable the API answers 503 with Retry-After and stores nothing
partial; once it is back, a retry of the same batch stores everything exactly once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import GroundTruthLabel, PredictionEvent
from tests.conftest import _admin
from tests.services.events.test_ingest import event


def _counts(sessions: sessionmaker[Session]) -> tuple[int, int]:
    with session_scope(sessions) as s:
        events = int(s.scalar(select(func.count(PredictionEvent.id))) or 0)
        labels = int(s.scalar(select(func.count(GroundTruthLabel.id))) or 0)
    return events, labels


def _label(i: int) -> dict[str, Any]:
    return {
        "study_id": f"STUDY-{i}",
        "finding": "effusion",
        "label": True,
        "source": "report",
        "reported_at": "2026-11-20T10:00:00+00:00",
    }


def test_database_outage_is_503_and_nothing_partial(
    client: Any, sessions: sessionmaker[Session], database_url: str
) -> None:
    assert (
        client.post("/v1/events", json={"events": [event(i) for i in range(10)]}).json()["stored"]
        == 10
    )
    dbname = database_url.rsplit("/", 1)[1]
    batch = {"events": [event(i) for i in range(10, 60)]}
    labels = {"labels": [_label(i) for i in range(20)]}
    _admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS false')
    try:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            f"WHERE datname = '{dbname}' AND pid <> pg_backend_pid()"
        )
        for path, body in (("/v1/events", batch), ("/v1/labels", labels)):
            resp = client.post(path, json=body)
            assert resp.status_code == 503, resp.text
            assert resp.headers["Retry-After"].isdigit()
            assert resp.json()["error"]["code"] == "database_unavailable"
            assert "nothing was stored" in resp.json()["error"]["message"]
        health = client.get("/healthz").json()
        assert health["database"] is False
    finally:
        _admin(f'ALTER DATABASE "{dbname}" ALLOW_CONNECTIONS true')
    assert _counts(sessions) == (10, 0)
    retried = client.post("/v1/events", json=batch).json()
    assert (retried["stored"], retried["duplicates"]) == (50, [])
    assert client.post("/v1/labels", json=labels).json()["stored"] == 20
    assert _counts(sessions) == (60, 20)
