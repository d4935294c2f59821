"""Fixtures for the audit trail: the real app with the audit router, records appended the way the
services append them, an attacker with superuser rights, and ``radwatch audit`` as a process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from services.audit import actions
from services.audit import service as audit
from services.core.db import session_scope
from services.core.settings import Settings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def api(settings: Settings, keys: dict[str, str]) -> Iterator[TestClient]:
    """The real app (no Triton needed) with the audit router, whether or not app.py has it yet."""
    from services.api.app import create_app
    from services.audit.endpoints import router

    app = create_app(settings)
    if not any(getattr(route, "path", None) == "/v1/audit" for route in app.routes):
        app.include_router(router)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def auth(keys: dict[str, str], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys[role]}"}


def append(sessions: sessionmaker[Session], n: int, *, actor: str = "alice") -> list[int]:
    """``n`` records, each committed in its own transaction; their ids."""
    ids = []
    for i in range(n):
        with session_scope(sessions) as s:
            rec = audit.record(
                s,
                actor=actor,
                action=actions.ALERT_ACKNOWLEDGED,
                entity_type=actions.ALERT,
                entity_id=i + 1,
                reason=f"note {i}",
                payload={"site": "north", "n": i},
            )
            ids.append(rec.id)
    return ids


def as_superuser(database_url: str, *statements: str, bypass: str = "replica") -> None:
    """Run ``statements`` the way an attacker with superuser rights would: past the append-only
    trigger, by ``SET session_replication_role = replica`` (ordinary triggers do not fire) or by
    disabling the trigger around them."""
    dsn = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn) as conn:
        if bypass == "replica":
            conn.execute("SET session_replication_role = replica")
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]
        else:
            conn.execute("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            for sql in statements:
                conn.execute(sql)  # type: ignore[arg-type]
            conn.execute("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
        conn.commit()


def run_audit_cli(
    database_url: str, *args: str, data_dir: Path
) -> subprocess.CompletedProcess[str]:
    """``radwatch audit ARGS`` in a fresh process, configured only by environment variables."""
    env = {
        **os.environ,
        "RADWATCH_DATABASE_URL": database_url,
        "RADWATCH_ENVIRONMENT": "test",
        "RADWATCH_DATA_DIR": str(data_dir),
    }
    return subprocess.run(
        [sys.executable, "-c", "from services.cli.audit import app; app()", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
