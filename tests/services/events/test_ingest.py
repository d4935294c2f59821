"""POST /v1/events against PostgreSQL: durable, idempotent, per-event rejection with reasons."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import EMBEDDING_DIM
from services.api.app import create_app
from services.core.db import session_scope
from services.core.models import Deployment, PredictionEvent
from services.core.settings import Settings
from tests.conftest import TEST_MODEL


def event(i: int, **over: Any) -> dict[str, Any]:
    rng = np.random.default_rng(i)
    body: dict[str, Any] = {
        "event_id": f"ev-{i}",
        "model": TEST_MODEL,
        "model_version": 1,
        "occurred_at": "2026-11-24T09:00:00+01:00",
        "metadata": {"study_id": f"STUDY-{i}", "patient_id": f"PAT-{i}", "site": "north"},
        "scores": {"effusion": 0.2, "nodule": 0.7},
        "embedding": rng.standard_normal(EMBEDDING_DIM).round(5).tolist(),
        "image_stats": {"img_mean": 0.4},
    }
    body.update(over)
    return body


def stored(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        return int(s.scalar(select(func.count(PredictionEvent.id))) or 0)


@pytest.fixture
def dims(sessions: sessionmaker[Session], deployed: None) -> None:
    """The test deployment declares its embedding length, so ingestion checks it."""
    with session_scope(sessions) as s:
        s.execute(update(Deployment).values(embedding_dim=EMBEDDING_DIM))


def test_batch_is_stored_pseudonymised_and_durable(client: Any, sessions: Any) -> None:
    resp = client.post("/v1/events", json={"events": [event(i) for i in range(50)]})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"received": 50, "stored": 50, "duplicates": [], "rejected": []}
    assert stored(sessions) == 50
    with session_scope(sessions) as s:
        row = s.scalars(select(PredictionEvent).where(PredictionEvent.event_id == "ev-7")).one()
        assert "STUDY-7" not in row.study_pid
        assert "PAT-7" not in (row.patient_pid or "")
        assert len(row.embedding) == 4 * EMBEDDING_DIM
        emb = np.frombuffer(row.embedding, dtype="<f4")
        assert np.allclose(emb, event(7)["embedding"], atol=1e-6)
        assert row.occurred_at is not None
        assert row.occurred_at.isoformat().startswith("2026-11-24T08:00:00")
        assert row.scores == {"effusion": 0.2, "nodule": 0.7}


def test_retried_batch_stores_nothing_twice(client: Any, sessions: Any) -> None:
    batch = {"events": [event(i) for i in range(20)]}
    assert client.post("/v1/events", json=batch).json()["stored"] == 20
    again = client.post("/v1/events", json={"events": [event(i) for i in range(10, 30)]})
    assert again.status_code == 200
    body = again.json()
    assert body["stored"] == 10
    assert sorted(body["duplicates"]) == sorted(f"ev-{i}" for i in range(10, 20))
    assert stored(sessions) == 30


def test_repeated_id_within_a_batch_is_one_event(client: Any, sessions: Any) -> None:
    resp = client.post("/v1/events", json={"events": [event(1), event(2), event(1)]})
    assert resp.json()["stored"] == 2
    assert resp.json()["duplicates"] == ["ev-1"]
    assert stored(sessions) == 2


BAD: list[tuple[str, Any, str]] = [
    ("missing site", event(100, metadata={"study_id": "S"}), "metadata.site"),
    ("missing study id", event(101, metadata={"site": "north"}), "metadata.study_id"),
    ("score above 1", event(102, scores={"effusion": 1.5}), "scores"),
    ("no scores", event(103, scores={}), "scores"),
    ("NaN in embedding", event(104, embedding=[float("nan")] * EMBEDDING_DIM), "embedding"),
    ("wrong embedding length", event(105, embedding=[0.1] * 7), "embedding"),
    ("unknown model", event(106, model="no-such-model"), "model"),
    ("unknown version", event(107, model_version=99), "model"),
    ("naive timestamp", event(108, occurred_at="2026-11-24T09:00:00"), "occurred_at"),
    ("unknown field", event(109, colour="red"), "colour"),
    ("bad event id", event(110, event_id="has spaces"), "event_id"),
    ("age out of range", event(111, metadata={"study_id": "S", "site": "n", "age": 300}), "age"),
    ("not an object", [1, 2, 3], "event"),
]


@pytest.mark.usefixtures("dims")
def test_bad_events_are_rejected_with_index_and_reason_and_the_rest_stored(
    client: Any, sessions: Any
) -> None:
    items: list[Any] = []
    for i, (_, bad, _) in enumerate(BAD):
        items += [event(i), bad]
    # NaN is not JSON; producers that write it (Python's json does) must still get a clear answer.
    body = json.dumps({"events": items})
    resp = client.post("/v1/events", content=body, headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    result = resp.json()
    assert result["stored"] == len(BAD)
    rejected = {r["index"]: r for r in result["rejected"]}
    assert sorted(rejected) == [2 * i + 1 for i in range(len(BAD))]
    for i, (name, _, field) in enumerate(BAD):
        r = rejected[2 * i + 1]
        assert field in r["message"], (name, r)
        assert r["message"].startswith(f"event {2 * i + 1}: "), r
    assert stored(sessions) == len(BAD)


def test_every_event_rejected_is_a_422_listing_them(client: Any, sessions: Any) -> None:
    resp = client.post("/v1/events", json={"events": [event(1, scores={"x": 2})] * 3})
    assert resp.status_code == 422
    err = resp.json()["error"]
    assert err["code"] == "validation_failed"
    assert "None of the 3 events was stored" in err["message"]
    assert [r["index"] for r in err["details"]["rejected"]] == [0, 1, 2]
    assert stored(sessions) == 0


@pytest.mark.parametrize(
    ("body", "headers", "status", "needle"),
    [
        (b"{not json", {"content-type": "application/json"}, 400, "not valid JSON"),
        (b"\xff\xfe\x00", {"content-type": "application/json"}, 400, "JSON"),
        (b"[]", {"content-type": "application/json"}, 422, '{"events": [...]}'),
        (b'{"events": {}}', {"content-type": "application/json"}, 422, '{"events": [...]}'),
        (b'{"events": []}', {"content-type": "application/json"}, 422, "between 1 and 1000"),
        (b"events=1", {"content-type": "text/plain"}, 415, "application/json"),
    ],
)
def test_bad_envelopes(client: Any, body: bytes, headers: Any, status: int, needle: str) -> None:
    resp = client.post("/v1/events", content=body, headers=headers)
    assert resp.status_code == status, resp.text
    assert needle in resp.json()["error"]["message"]


def test_more_than_1000_events_is_refused(client: Any, sessions: Any) -> None:
    small = event(0, embedding=[0.0])
    resp = client.post("/v1/events", json={"events": [small] * 1001})
    assert resp.status_code == 422
    assert "1001 items" in resp.json()["error"]["message"]
    assert stored(sessions) == 0


@pytest.fixture
def small_limit_client(
    api_settings: Settings, keys: dict[str, str], deployed: None
) -> Iterator[TestClient]:
    app = create_app(api_settings.model_copy(update={"max_upload_mb": 0.01}))
    with TestClient(app, raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {keys['mlops_engineer']}"
        yield c


def test_oversized_body_is_413(small_limit_client: TestClient, sessions: Any) -> None:
    resp = small_limit_client.post("/v1/events", json={"events": [event(i) for i in range(20)]})
    assert resp.status_code == 413
    assert "send fewer events" in resp.json()["error"]["message"]
    assert stored(sessions) == 0


@pytest.mark.parametrize(("role", "status"), [("auditor", 403), ("clinical_safety_officer", 403)])
def test_wrong_role(client: Any, keys: dict[str, str], role: str, status: int) -> None:
    resp = client.post(
        "/v1/events",
        json={"events": [event(1)]},
        headers={"Authorization": f"Bearer {keys[role]}"},
    )
    assert resp.status_code == status


def test_no_key_is_401(client: Any) -> None:
    resp = client.post("/v1/events", json={"events": [event(1)]}, headers={"Authorization": ""})
    assert resp.status_code == 401
