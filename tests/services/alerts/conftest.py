"""Fixtures for the alerts domain: the real app on PostgreSQL (no Triton needed), a real HTTP
receiver on a free port, a controllable clock, and alerts seeded the way the monitor stores them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.models import Alert, AlertState, MonitorResult
from services.core.processes import free_port
from services.core.settings import Settings


@pytest.fixture
def api(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    """The real app (lifespan runs) with no key set; tests pick one with :func:`auth`."""
    from services.api.app import create_app

    with TestClient(create_app(settings), raise_server_exceptions=False) as c:
        yield c


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def seed_alert(
    sessions: sessionmaker[Session],
    *,
    site: str = "north",
    severity: str = "critical",
    state: AlertState = AlertState.OPEN,
    monitor: str = "acquisition_drift",
    model_name: str = "m",
) -> int:
    """An alert with its monitor result, committed; returns its id."""
    with session_scope(sessions) as s:
        result = MonitorResult(
            monitor=monitor,
            model_name=model_name,
            model_version=1,
            site=site,
            window_index=0,
            first_event_id=1,
            last_event_id=100,
            n_current=100,
            n_reference=100,
            statistic=0.3,
            p_value=1e-6,
            drift=True,
            details={},
        )
        s.add(result)
        s.flush()
        alert = Alert(
            monitor=monitor,
            model_name=model_name,
            site=site,
            severity=severity,
            detail=f"Acquisition drift at site '{site}'",
            result_id=result.id,
            opened_after_predictions=100,
            state=state,
        )
        s.add(alert)
        s.flush()
        return alert.id


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP server in a thread that records every POST. ``fail_first`` requests are
    answered with ``fail_status``, the rest with 200; ``delay_s`` delays every answer."""

    url: str
    requests: list[Received] = field(default_factory=list)
    fail_first: int = 0
    fail_status: int = 500
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)
    release: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(url=f"http://127.0.0.1:{port}/hooks/radwatch")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with rec.lock:
                rec.requests.append(Received(self.path, dict(self.headers.items()), body))
                failing = len(rec.requests) <= rec.fail_first
            if rec.delay_s:
                rec.release.wait(rec.delay_s)
            self.send_response(rec.fail_status if failing else 200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        rec.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class Clock:
    """A clock the test moves by hand, so retries are checked without real waiting. It starts a
    minute ahead of the real clock, so rows written with the real time during the test are
    already due."""

    def __init__(self, start: datetime | None = None) -> None:
        self.t = start or datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()
