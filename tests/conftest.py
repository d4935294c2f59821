"""Root test configuration.

Real servers only: every test that needs a database gets its own PostgreSQL database, cloned
from a template migrated once with Alembic, and dropped afterwards. Triton and MLflow servers are
session fixtures from tests/fixtures.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import make_engine, make_sessionmaker, migrate
from services.core.enqueue import CeleryEnqueuer
from services.core.runtime import Runtime
from services.core.settings import Settings, get_settings

pytest_plugins = [
    "tests.fixtures.triton",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.lifecycle",
    "tests.fixtures.webhooks",
    "tests.fixtures.redis_db",
]

PG_ADMIN_DSN = os.environ.get("RADWATCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("RADWATCH_TEST_REDIS", "redis://127.0.0.1:6379")


def _pg_url(dbname: str) -> str:
    base = PG_ADMIN_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    return f"{base}/{dbname}"


def _admin(sql: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A database migrated to head once per session; tests clone it (CREATE ... TEMPLATE)."""
    name = f"rw_tmpl_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        migrate(_pg_url(name))
        yield name
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def database_url(pg_template: str) -> Iterator[str]:
    name = f"rw_test_{uuid.uuid4().hex[:10]}"
    _admin(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    try:
        yield _pg_url(name)
    finally:
        _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = make_engine(database_url)
    yield eng
    eng.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work is rolled back at the end (the database is dropped anyway)."""
    s = sessions()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


def enqueuer_for(settings: Settings) -> CeleryEnqueuer:
    """The real Celery producer of ``settings``' broker (what the API and worker build)."""
    return CeleryEnqueuer(settings.resolved_broker_url)


@pytest.fixture
def install_runtime(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Settings], Runtime]]:
    """Make ``services.core.runtime.current()`` (what Celery tasks use) this test's runtime:
    the real adapters built by services.wiring for the given settings. The Celery app module
    reads the process-wide settings when first imported, so those point at the same data dir."""
    from services.core import runtime
    from services.wiring import build_runtime

    def install(settings: Settings) -> Runtime:
        monkeypatch.setenv("RADWATCH_DATA_DIR", str(settings.data_dir))
        get_settings.cache_clear()
        rt = build_runtime(settings)
        monkeypatch.setattr(runtime, "_current", rt)
        return rt

    try:
        yield install
    finally:
        runtime.reset()
        get_settings.cache_clear()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(environment="test", data_dir=tmp_path / "data", database_url=database_url)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots, reports and logs worth keeping from a test run."""
    path = Path(os.environ.get("RADWATCH_TEST_ARTIFACTS", "test-artifacts"))
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- API fixtures: a real Triton with a small model, a migrated database, keys for each role ---

TEST_MODEL = "cxr-test"


@pytest.fixture(scope="session")
def served_model(triton_server):  # type: ignore[no-untyped-def]
    """A seeded, untrained RadiographNet exported as version 1 and loaded on the session Triton.

    Untrained weights are enough here: these tests check the plumbing (shapes, recording,
    errors), not accuracy. The end-to-end test uses a trained model.
    """
    import torch

    from pipelines.export_triton import export_model
    from pipelines.model import RadiographNet
    from services.serving.client import TritonClient

    torch.manual_seed(0)
    export_model(RadiographNet().eval(), triton_server.model_repository, TEST_MODEL, 1)
    client = TritonClient(triton_server.url)
    client.load_model(TEST_MODEL)
    return triton_server


@pytest.fixture
def api_settings(settings: Settings, served_model) -> Settings:  # type: ignore[no-untyped-def]
    return settings.model_copy(update={"triton_url": served_model.url, "model_name": TEST_MODEL})


@pytest.fixture
def keys(sessions: sessionmaker[Session]) -> dict[str, str]:
    """One API key per role, keyed by role value."""
    from services.auth.service import create_key
    from services.core.db import session_scope
    from services.core.models import Role

    with session_scope(sessions) as s:
        return {r.value: create_key(s, name=f"test-{r.value}", role=r) for r in Role}


@pytest.fixture
def deployed(sessions: sessionmaker[Session], served_model) -> None:  # type: ignore[no-untyped-def]
    from services.core.db import session_scope
    from services.serving.service import deploy_champion

    with session_scope(sessions) as s:
        deploy_champion(
            s,
            model_name=TEST_MODEL,
            model_version=1,
            mlflow_run_id="test-run",
            triton_model=TEST_MODEL,
        )


@pytest.fixture
def client(api_settings: Settings, keys: dict[str, str], deployed: None) -> Iterator[object]:
    """A TestClient on the real app (lifespan runs), authenticated as an MLOps engineer."""
    from fastapi.testclient import TestClient

    from services.api.app import create_app

    with TestClient(create_app(api_settings), raise_server_exceptions=False) as c:
        c.headers["Authorization"] = f"Bearer {keys['mlops_engineer']}"
        yield c
