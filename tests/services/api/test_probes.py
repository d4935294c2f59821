"""Kubernetes probes: /livez never depends on anything; /readyz follows the database only."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from services.api.app import create_app
from services.core.processes import free_port
from services.core.settings import Settings


def test_live_and_ready_with_a_database(client: Any) -> None:
    assert client.get("/livez").json() == {"alive": True}
    r = client.get("/readyz")
    assert (r.status_code, r.json()) == (200, {"ready": True, "database": True})


def test_not_ready_without_a_database_but_still_live(settings: Settings) -> None:
    down = settings.model_copy(
        update={
            "database_url": f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/nothing",
            "triton_url": f"127.0.0.1:{free_port()}",
        }
    )
    with TestClient(create_app(down), raise_server_exceptions=False) as c:
        assert c.get("/livez").status_code == 200
        r = c.get("/readyz")
        assert (r.status_code, r.json()["ready"]) == (503, False)
