"""What a running process holds: settings, the database engine and the adapters of the ports.

One :class:`Runtime` per process, built by :func:`services.wiring.build_runtime` (the only
place that names concrete adapters) and handed out by the composition roots:

- the API builds it in its lifespan and routes receive it as ``StateDep``;
- a Celery worker process builds it lazily after the fork; tasks reach it with :func:`current`;
- the CLI and the demo build one per command.

Domain code receives a runtime, a sessionmaker or a session from its caller; it never builds
clients itself and never reads :func:`current` (only tasks do).
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from services.core.ports import Enqueuer, InferenceServer, ModelRegistry
from services.core.settings import Settings

if TYPE_CHECKING:
    from pipelines.probes import Probe
    from pipelines.profile import ReferenceProfile


@dataclass
class Runtime:
    """The clients of one process. ``registry`` is built on first use: only lifecycle work needs
    MLflow, and opening an MLflow store is slow enough that the prediction path should not pay
    for it."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    triton: InferenceServer
    enqueuer: Enqueuer
    registry_factory: Callable[[], ModelRegistry] = field(repr=False)
    _registry: ModelRegistry | None = field(default=None, repr=False)
    _profiles: dict[tuple[str, int], ReferenceProfile] = field(default_factory=dict, repr=False)
    _probes: dict[tuple[str, int], Probe] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def registry(self) -> ModelRegistry:
        with self._lock:
            if self._registry is None:
                self._registry = self.registry_factory()
            return self._registry

    @property
    def model_repository(self) -> Path:
        """Triton's model repository folder (where versions are exported before a load)."""
        return self.settings.triton_repository

    def profile(self, model_name: str, version: int) -> ReferenceProfile:
        """The reference profile of a model version, downloaded from the registry once per
        process (it never changes for a version)."""
        key = (model_name, version)
        if key not in self._profiles:
            self._profiles[key] = self.registry.load_reference_profile(model_name, version)
        return self._profiles[key]

    def probe(self, model_name: str, version: int) -> Probe:
        """A probe version's heads (its ``probe.npz`` serving file), downloaded from the registry
        once per process like reference profiles: a registered version never changes, and the
        prediction path must not pay a registry round trip per request."""
        key = (model_name, version)
        if key not in self._probes:
            from pipelines.probes import load

            with tempfile.TemporaryDirectory(prefix="radwatch-probe-") as tmp:
                path = self.registry.download_serving_artifact(model_name, version, Path(tmp))
                self._probes[key] = load(path)
        return self._probes[key]

    def close(self) -> None:
        self.triton.close()
        self.engine.dispose()


# --- the worker process's runtime --------------------------------------------------------------

_lock = threading.Lock()
_builder: Callable[[], Runtime] | None = None
_current: Runtime | None = None


def install(builder: Callable[[], Runtime]) -> None:
    """Say how this process builds its runtime (the Celery app does, at import)."""
    global _builder
    with _lock:
        _builder = builder


def current() -> Runtime:
    """This process's runtime, built on first use. For Celery tasks only."""
    global _current
    with _lock:
        if _current is None:
            if _builder is None:
                raise RuntimeError(
                    "no runtime installed in this process; tasks run inside a worker started "
                    "with `radwatch worker` (services.worker.app installs one)"
                )
            _current = _builder()
        return _current


def reset() -> None:
    """Drop the process's runtime (after a fork, or between tests)."""
    global _current
    with _lock:
        if _current is not None:
            _current.close()
        _current = None
