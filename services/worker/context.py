"""Per-process clients for Celery workers, built after the fork (``worker_process_init``) or on
first use, never at import time."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from pipelines.profile import ReferenceProfile
from services.core.db import make_engine, make_sessionmaker
from services.core.settings import Settings, get_settings
from services.registry.mlflow_registry import MlflowRegistry
from services.serving.client import TritonClient


@dataclass
class WorkerContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    registry: MlflowRegistry
    triton: TritonClient
    _profiles: dict[tuple[str, int], ReferenceProfile] = field(default_factory=dict)

    def profile(self, model_name: str, version: int) -> ReferenceProfile:
        """The reference profile of a model version, downloaded from MLflow once per process."""
        key = (model_name, version)
        if key not in self._profiles:
            self._profiles[key] = self.registry.load_reference_profile(model_name, version)
        return self._profiles[key]


_lock = threading.Lock()
_context: WorkerContext | None = None


def build_context(settings: Settings | None = None) -> WorkerContext:
    settings = settings or get_settings()
    engine = make_engine(settings.resolved_database_url)
    return WorkerContext(
        settings=settings,
        engine=engine,
        sessions=make_sessionmaker(engine),
        registry=MlflowRegistry(settings.resolved_mlflow_uri),
        triton=TritonClient(settings.triton_url),
    )


def get_context() -> WorkerContext:
    global _context
    with _lock:
        if _context is None:
            _context = build_context()
        return _context


def reset_context() -> None:
    """Drop the process's clients (after a fork, or between tests)."""
    global _context
    with _lock:
        if _context is not None:
            _context.engine.dispose()
        _context = None
