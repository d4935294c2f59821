"""POST /v1/labels and the label join, against PostgreSQL: labels arrive before or after their
events, in any order, possibly corrected; the join must equal a direct computation."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import GroundTruthLabel
from services.labels.repository import labelled_events
from tests.conftest import TEST_MODEL
from tests.services.events.test_ingest import event

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def label(study: int, value: bool, *, days: float = 1.0, **over: Any) -> dict[str, Any]:
    body = {
        "study_id": f"STUDY-{study}",
        "finding": "effusion",
        "label": value,
        "source": "report_nlp",
        "reported_at": (T0 + timedelta(days=days)).isoformat(),
    }
    body.update(over)
    return body


def n_labels(sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as s:
        return int(s.scalar(select(func.count(GroundTruthLabel.id))) or 0)


def test_labels_are_stored_once_and_pseudonymised(client: Any, sessions: Any) -> None:
    batch = {"labels": [label(i, i % 2 == 0) for i in range(10)]}
    first = client.post("/v1/labels", json=batch)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 10, "stored": 10, "duplicates": [], "rejected": []}
    again = client.post("/v1/labels", json=batch)
    assert again.json()["stored"] == 0
    assert again.json()["duplicates"] == list(range(10))
    assert n_labels(sessions) == 10
    with session_scope(sessions) as s:
        pids = list(s.scalars(select(GroundTruthLabel.study_pid)))
    assert not [p for p in pids if "STUDY" in p]


def test_same_instant_in_another_time_zone_is_a_duplicate(client: Any, sessions: Any) -> None:
    client.post("/v1/labels", json={"labels": [label(1, True)]})
    other_tz = label(1, True)
    other_tz["reported_at"] = "2026-11-02T10:00:00+02:00"  # = T0 + 1 day, in UTC+2
    resp = client.post("/v1/labels", json={"labels": [other_tz]})
    assert resp.json()["duplicates"] == [0]
    assert n_labels(sessions) == 1


BAD = [
    ("upper-case finding", label(1, True, finding="Effusion"), "finding"),
    ("naive reported_at", label(2, True, reported_at="2026-11-02T08:00:00"), "reported_at"),
    ("label not a boolean", label(3, "maybe"), "label"),
    ("missing study id", {k: v for k, v in label(4, True).items() if k != "study_id"}, "study_id"),
    ("unknown field", label(5, True, confidence=0.3), "confidence"),
]


def test_bad_labels_are_rejected_and_the_rest_stored(client: Any, sessions: Any) -> None:
    items = []
    for i, (_, bad, _) in enumerate(BAD):
        items += [label(100 + i, True), bad]
    resp = client.post("/v1/labels", json={"labels": items})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["stored"] == len(BAD)
    for r, (name, _, field) in zip(body["rejected"], BAD, strict=True):
        assert field in r["message"], (name, r)
        assert r["message"].startswith("label "), r
    assert [r["index"] for r in body["rejected"]] == [2 * i + 1 for i in range(len(BAD))]


def test_all_bad_is_422(client: Any) -> None:
    resp = client.post("/v1/labels", json={"labels": [BAD[0][1]]})
    assert resp.status_code == 422
    assert resp.json()["error"]["details"]["rejected"][0]["index"] == 0


def test_auditor_cannot_write_labels(client: Any, keys: dict[str, str]) -> None:
    resp = client.post(
        "/v1/labels",
        json={"labels": [label(1, True)]},
        headers={"Authorization": f"Bearer {keys['auditor']}"},
    )
    assert resp.status_code == 403


def test_late_labels_in_random_order_join_exactly(client: Any, sessions: Any) -> None:
    """Events and labels (some before their event, some up to 14 days late, some corrected, some
    for studies never predicted) arrive shuffled in small batches. The join must give, for every
    predicted study with a label, the label with the latest reported_at."""
    rng = random.Random(7)
    n = 120
    events = [
        event(i, metadata={"study_id": f"STUDY-{i}", "site": rng.choice("ab")}) for i in range(n)
    ]
    labels: list[dict[str, Any]] = []
    truth: dict[str, bool] = {}
    for i in range(n):
        if rng.random() < 0.2:
            continue  # never labelled
        first = rng.random() < 0.3
        delay = rng.uniform(0, 14)
        labels.append(label(i, first, days=delay))
        final = first
        if rng.random() < 0.25:  # corrected later by a review
            final = not first
            labels.append(label(i, final, days=delay + rng.uniform(0.1, 3), source="review"))
        truth[f"ev-{i}"] = final
    labels += [label(10_000 + j, True) for j in range(15)]  # studies never predicted
    stream: list[tuple[str, dict[str, Any]]] = [("events", e) for e in events]
    stream += [("labels", lab) for lab in labels]
    rng.shuffle(stream)
    for start in range(0, len(stream), 17):
        chunk = stream[start : start + 17]
        for kind in ("events", "labels"):
            items = [item for k, item in chunk if k == kind]
            if items:
                resp = client.post(f"/v1/{kind}", json={kind: items})
                assert resp.status_code == 200, resp.text
                assert not resp.json()["rejected"]

    with session_scope(sessions) as s:
        joined = labelled_events(s, model_name=TEST_MODEL, finding="effusion")
        got = {e.event_id: value for e, value in joined}
        ids = [e.event_id for e, _ in joined]
        only_a = labelled_events(s, model_name=TEST_MODEL, finding="effusion", site="a")
        other = labelled_events(s, model_name=TEST_MODEL, finding="nodule")
    assert got == truth
    assert len(ids) == len(set(ids))
    assert {e.event_id for e, _ in only_a} == {
        f"ev-{i}" for i, ev in enumerate(events) if ev["metadata"]["site"] == "a"
    } & set(truth)
    assert other == []
    print(f"events {n}, labels {len(labels)}, labelled events joined {len(got)}")


@pytest.mark.parametrize("limit", [1, 5])
def test_join_pages_by_event_id(client: Any, sessions: Any, limit: int) -> None:
    client.post("/v1/events", json={"events": [event(i) for i in range(8)]})
    client.post("/v1/labels", json={"labels": [label(i, True) for i in range(8)]})
    seen: list[str] = []
    after = 0
    with session_scope(sessions) as s:
        while page := labelled_events(
            s, model_name=TEST_MODEL, finding="effusion", after_id=after, limit=limit
        ):
            seen += [e.event_id for e, _ in page]
            after = page[-1][0].id
    assert seen == [f"ev-{i}" for i in range(8)]


def test_embedded_sqlite_keeps_utc_and_duplicates(tmp_path: Any, settings: Any) -> None:
    """The demo's SQLite stores no time-zone offset: labels must still compare in UTC."""
    from services.core.db import make_engine, make_sessionmaker, migrate
    from services.labels.service import ingest_labels

    url = f"sqlite:///{tmp_path}/embedded.db"
    migrate(url)
    sqlite_sessions = make_sessionmaker(make_engine(url))
    a = label(1, True)
    b = dict(a, reported_at="2026-11-02T10:00:00+02:00")  # the same instant
    with session_scope(sqlite_sessions) as s:
        first = ingest_labels(s, settings=settings, items=[a])
    with session_scope(sqlite_sessions) as s:
        second = ingest_labels(s, settings=settings, items=[b, label(2, False)])
        stamps = list(s.scalars(select(GroundTruthLabel.reported_at)))
    assert (first.stored, second.stored, second.duplicates) == (1, 1, [0])
    assert {t.replace(tzinfo=UTC) for t in stamps} == {T0 + timedelta(days=1)}
