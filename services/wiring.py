"""The one place that builds the real adapters of the ports (composition).

The API lifespan, the Celery worker, the CLI and the demo all call :func:`build_runtime`; no
other module constructs an MLflow registry, a Triton client or a Celery producer for the
running system, so changing an adapter (or its options) is a change here only.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from services.core.db import make_engine, make_sessionmaker
from services.core.enqueue import CeleryEnqueuer
from services.core.ports import ModelRegistry
from services.core.runtime import Runtime
from services.core.settings import Settings, get_settings
from services.serving.client import TritonClient


def registry_for(settings: Settings) -> ModelRegistry:
    """The MLflow adapter for ``settings`` (imported here only: MLflow is slow to import)."""
    from services.registry.mlflow_registry import MlflowRegistry

    return MlflowRegistry(settings.resolved_mlflow_uri)


def build_runtime(settings: Settings | None = None) -> Runtime:
    """Engine, sessionmaker and the three adapters for ``settings`` (default: the environment).
    Nothing connects yet: the engine's pool, Triton's HTTP client and the broker connect on
    first use, and the registry is built on first use."""
    settings = settings or get_settings()
    engine = make_engine(settings.resolved_database_url)
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        triton=TritonClient(settings.triton_url),
        enqueuer=CeleryEnqueuer(settings.resolved_broker_url),
        registry_factory=lambda: registry_for(settings),
    )


@contextmanager
def runtime_scope(settings: Settings | None = None) -> Iterator[Runtime]:
    """A runtime for one command (CLI, demo, benchmark), closed at the end."""
    rt = build_runtime(settings)
    try:
        yield rt
    finally:
        rt.close()
