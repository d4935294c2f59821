"""Fixtures for the fault tests (see :mod:`tests.reliability.harness` for the processes).

The worker needs a model: a deployment row, plus a reference profile that it loads from MLflow
exactly as in production (``WorkerContext.profile``). The cheapest real way is one embedded
MLflow store per session (SQLite file, local artifacts) holding a seeded, untrained RadiographNet
and a synthetic reference profile; registering it costs a few seconds. Triton is not needed:
the load goes through ``POST /v1/events`` (predictions made elsewhere).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from services.core.db import session_scope
from services.core.processes import free_port, settings_env
from tests.reliability.harness import (
    MODEL,
    MONITORS,
    RedisServer,
    RegisteredModel,
    Stack,
    WebhookSink,
    wait_for,
)


@pytest.fixture(scope="session")
def registered_model(tmp_path_factory: pytest.TempPathFactory) -> RegisteredModel:
    import torch

    from pipelines.model import RadiographNet
    from services.registry.mlflow_registry import MlflowRegistry
    from tests.reliability.load import reference_profile

    root = tmp_path_factory.mktemp("reliability-mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    registry = MlflowRegistry(uri)
    torch.manual_seed(0)
    run_id = registry.log_training(
        experiment=MODEL,
        run_name="reliability-fixture",
        params={"weights": "seeded, untrained"},
        metrics={},
        model=RadiographNet().eval(),
        profile=reference_profile(),
        model_card="# Model card\n\nFault-test fixture: untrained weights, synthetic profile.\n",
        tags={"radwatch.kind": "test"},
    )
    version = registry.register(MODEL, run_id)
    registry.set_alias(MODEL, "champion", version)
    return RegisteredModel(uri, MODEL, version, run_id)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    workdir = tmp_path / "redis"
    workdir.mkdir()
    server = RedisServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def webhook_sink() -> Iterator[WebhookSink]:
    with WebhookSink().serving() as sink:
        yield sink


@pytest.fixture
def stack(
    database_url: str,
    sessions: sessionmaker[Session],
    registered_model: RegisteredModel,
    redis_server: RedisServer,
    webhook_sink: WebhookSink,
    tmp_path: Path,
) -> Iterator[Stack]:
    """A deployed model with two declared drift monitors and a webhook subscription, served by a
    running API and worker (beat every second)."""
    from pipelines.contract import EMBEDDING_DIM
    from services.auth.service import create_key
    from services.core.models import Role
    from services.serving.service import deploy_champion

    with session_scope(sessions) as s:
        deploy_champion(
            s,
            model_name=registered_model.name,
            model_version=registered_model.version,
            mlflow_run_id=registered_model.run_id,
            triton_model=registered_model.name,
            embedding_dim=EMBEDDING_DIM,
        )
        api_key = create_key(s, name="reliability", role=Role.MLOPS_ENGINEER)

    env = settings_env(
        {
            "environment": "test",
            "data_dir": (tmp_path / "data").resolve(),
            "database_url": database_url,
            "broker_url": redis_server.url,
            "mlflow_tracking_uri": registered_model.tracking_uri,
            # Nothing listens there: ingestion does not need Triton, and /healthz says so fast.
            "triton_url": f"127.0.0.1:{free_port()}",
            "model_name": registered_model.name,
            "monitor_interval_s": 1,
            "webhook_interval_s": 1,
            "webhook_backoff_s": 1,
            "webhook_backoff_max_s": 2,
        }
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    st = Stack(env, logs, free_port(), api_key, database_url, redis_server)
    try:
        st.start_api()
        st.start_worker()
        st.wait_api()
        st.wait_worker()
        with st.client() as c:
            for name, spec in MONITORS.items():
                r = c.post("/v1/monitors", json={"model": MODEL, "name": name, "spec": spec})
                assert r.status_code == 201, r.text
                st.monitor_ids[name] = r.json()["id"]
            r = c.post("/v1/webhooks", json={"url": webhook_sink.url, "secret": uuid.uuid4().hex})
            assert r.status_code == 201, r.text
        # The first tick after the monitors exist loads the reference profile from MLflow (the
        # global monitor has a target before any event), so the load starts on a warm worker.
        # Ticks run one at a time: the second to finish from now started after this point.
        ticks = st.worker_ticks()
        wait_for(
            lambda: st.worker_ticks() >= ticks + 2,
            timeout_s=90,
            what="two monitor ticks after the monitors were declared",
            why=st.log_tails,
        )
        yield st
    finally:
        st.stop()
