"""The saga machinery every promotion step shares: all-or-nothing across three systems.

Each step changes three things that must agree: Triton (what is loaded), the database (routing,
deployments, the promotion record and the audit log) and MLflow (the ``champion``/``candidate``
aliases). A step runs as:

1. Make Triton ready first (load the version that is about to receive traffic and check it is
   ready; :func:`services.serving.service.make_ready`). Loading is additive: with
   ``version_policy: all`` the old version keeps serving while the new one loads, so there is
   no gap. Nothing is unloaded by a promotion; the previous champion stays loaded so a rollback
   needs no load at all.
2. Change the database rows in one transaction (not yet committed).
3. Move the MLflow aliases, remembering how to undo each move (:class:`Aliases`).
4. Commit. If anything in 2-4 fails, the transaction rolls back and the alias moves are undone
   in reverse order, so MLflow, routing and the audit log are all as before the step. The
   failure is logged and answered with a clear error; a failed step leaves no audit record,
   because nothing changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from services.core.db import session_scope
from services.core.models import Deployment, Promotion
from services.core.ports import ModelRegistry
from services.core.runtime import Runtime
from services.serving.service import deploy_champion

log = logging.getLogger(__name__)

CANDIDATE_ALIAS, CHAMPION_ALIAS = "candidate", "champion"


@dataclass
class Undo:
    """Undo actions in the order their steps ran; :meth:`run` undoes them in reverse."""

    steps: list[tuple[str, Callable[[], None]]] = field(default_factory=list)

    def add(self, what: str, fn: Callable[[], None]) -> None:
        self.steps.append((what, fn))

    def run(self) -> None:
        for what, fn in reversed(self.steps):
            try:
                fn()
            except Exception as exc:  # keep undoing the rest; say what could not be undone
                log.error("could not undo %s: %s", what, type(exc).__name__)


class Aliases:
    """Alias moves that remember how to undo themselves."""

    def __init__(self, registry: ModelRegistry, model_name: str, undo: Undo) -> None:
        self.registry, self.model, self.undo = registry, model_name, undo

    def _restore(self, alias: str, before: int | None) -> Callable[[], None]:
        def restore() -> None:
            if before is None:
                self.registry.delete_alias(self.model, alias)
            else:
                self.registry.set_alias(self.model, alias, before)

        return restore

    # The undo is registered before the move: a move that fails after MLflow applied it (a
    # timeout on the answer) is still undone, and undoing a move that never happened is a no-op.
    def set(self, alias: str, version: int) -> None:
        before = self.registry.alias_version(self.model, alias)
        self.undo.add(f"alias {alias}", self._restore(alias, before))
        self.registry.set_alias(self.model, alias, version)

    def delete(self, alias: str) -> None:
        before = self.registry.alias_version(self.model, alias)
        self.undo.add(f"alias {alias}", self._restore(alias, before))
        self.registry.delete_alias(self.model, alias)


Step = Callable[[Session, Aliases], Promotion]


def atomic(rt: Runtime, model_name: str, step: Step) -> int:
    """Run ``step`` all-or-nothing (see the module docstring); returns the promotion id."""
    undo = Undo()
    try:
        with session_scope(rt.sessions) as session:
            promotion = step(session, Aliases(rt.registry, model_name, undo))
            session.flush()
            promotion_id = promotion.id
        return promotion_id
    except BaseException as exc:
        undo.run()
        log.warning("lifecycle step on %s undone: %s", model_name, type(exc).__name__)
        raise


def crown(session: Session, deployment: Deployment, actor: str) -> None:
    """Make an already-deployed version the champion again, keeping its deployment settings."""
    deploy_champion(
        session,
        model_name=deployment.model_name,
        model_version=deployment.model_version,
        mlflow_run_id=deployment.mlflow_run_id,
        triton_model=deployment.triton_model,
        operating_threshold=deployment.operating_threshold,
        embedding_dim=deployment.embedding_dim,
        actor=actor,
    )
