"""The committed watermark: a monitor window never skips an event whose transaction commits late.

PostgreSQL draws ids at insert time; without the watermark a window read while an ingesting
transaction is still open could pass over that transaction's (smaller) ids for good.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import Deployment
from services.events import repository
from services.events.ingest import ingest_events
from tests.services.events.test_ingest import event


def _ingest(session: Session, settings: Any, ids: range) -> None:
    done = ingest_events(session, settings=settings, items=[event(i) for i in ids])
    assert done.result.stored == len(ids), done.result


def test_watermark_waits_for_the_open_ingest_and_then_covers_it(
    sessions: sessionmaker[Session], settings: Any, deployed: None
) -> None:
    with session_scope(sessions) as s:
        s.execute(update(Deployment).values(embedding_dim=None))
    slow = sessions()
    _ingest(slow, settings, range(0, 5))  # ids drawn, not committed: the shared lock is held
    with session_scope(sessions) as s:
        _ingest(s, settings, range(5, 10))  # a later transaction commits first (larger ids)

    seen: list[int] = []

    def read() -> None:
        with session_scope(sessions) as s:
            seen.append(repository.committed_watermark(s))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive(), "the watermark must wait for the open ingesting transaction"
    slow.commit()
    slow.close()
    reader.join(timeout=10)
    assert not reader.is_alive()

    with session_scope(sessions) as s:
        rows = repository.window(
            s, model_name="cxr-test", site="north", after_id=0, size=100, up_to_id=seen[0]
        )
    assert sorted(r.event_id for r in rows) == sorted(f"ev-{i}" for i in range(10))


def test_watermark_does_not_wait_for_readers(
    sessions: sessionmaker[Session], settings: Any, deployed: None
) -> None:
    with session_scope(sessions) as s:
        _ingest(s, settings, range(3))
    with session_scope(sessions) as reader, session_scope(sessions) as other:
        other.execute(update(Deployment).values(active=True))  # an unrelated open write
        start = time.perf_counter()
        mark = repository.committed_watermark(reader)
        assert time.perf_counter() - start < 2.0
    assert mark > 0
