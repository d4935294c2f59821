"""Shadow inference: the candidate scores a mirrored copy of a live request.

It runs after the champion's response has been sent (a FastAPI background task), on its own
short transaction, so neither its latency nor its failure reaches the clinician. Results go to
``shadow_predictions`` next to the champion's event id, for comparison before canary.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from pipelines.contract import FINDINGS
from pipelines.preprocess import to_model_input
from services.core.db import session_scope
from services.core.models import Deployment, ShadowPrediction
from services.core.ports import InferenceServer
from services.metrics.registry import SHADOW_PREDICTIONS
from services.serving import repository

log = logging.getLogger(__name__)


class _Budget:
    """Shadow work in flight in this process. Mirroring doubles the inference load; when the
    candidate falls behind, new mirrors are skipped (and counted) instead of queueing behind
    clinical requests, so shadow can never slow the champion's answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inflight = 0

    def try_acquire(self, limit: int) -> bool:
        with self._lock:
            if self._inflight >= limit:
                return False
            self._inflight += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._inflight = max(0, self._inflight - 1)


budget = _Budget()


def admit(model_name: str, limit: int) -> bool:
    """Whether to mirror this request; a skipped mirror is counted, never an error."""
    if budget.try_acquire(limit):
        return True
    SHADOW_PREDICTIONS.labels(model_name, "skipped").inc()
    return False


def mirror(  # called only after admit() returned True
    sessions: sessionmaker[Session],
    triton: InferenceServer,
    *,
    candidate: Deployment,
    champion_version: int,
    event_id: str,
    champion_scores: Mapping[str, float],
    image: npt.NDArray[Any],
) -> None:
    start = time.perf_counter()
    try:
        output = triton.infer(
            candidate.triton_model, candidate.model_version, to_model_input([image])
        )
        probs = output.probs[0]
        if not np.all(np.isfinite(probs)):
            raise ValueError("non-finite candidate scores")
        latency_ms = (time.perf_counter() - start) * 1000.0
        with session_scope(sessions) as session:
            repository.add_shadow(
                session,
                ShadowPrediction(
                    event_id=event_id,
                    model_name=candidate.model_name,
                    candidate_version=candidate.model_version,
                    champion_version=champion_version,
                    scores={f: float(p) for f, p in zip(FINDINGS, probs, strict=True)},
                    champion_scores=dict(champion_scores),
                    latency_ms=latency_ms,
                ),
            )
        SHADOW_PREDICTIONS.labels(candidate.model_name, "stored").inc()
    except Exception as exc:  # never reaches the request; counted and logged without PHI
        SHADOW_PREDICTIONS.labels(candidate.model_name, "failed").inc()
        log.warning(
            "shadow inference of %s v%s failed: %s",
            candidate.model_name,
            candidate.model_version,
            type(exc).__name__,
        )
    finally:
        budget.release()


def count(session: Session, model_name: str, candidate_version: int, *, since_id: int = 0) -> int:
    return repository.shadow_count(session, model_name, candidate_version, since_id=since_id)


def compare(
    session: Session,
    model_name: str,
    candidate_version: int,
    *,
    threshold: float,
    limit: int = 5000,
) -> dict[str, Any]:
    """Agreement of the candidate with the champion on the mirrored studies, per finding:
    mean absolute score difference and the share of studies with the same decision at the
    operating threshold."""
    rows = repository.shadow_rows(session, model_name, candidate_version, limit=limit)
    out: dict[str, Any] = {"n": len(rows), "findings": {}}
    if not rows:
        return out
    latencies = np.array([r.latency_ms for r in rows])
    out["latency_ms_p50"] = float(np.median(latencies))
    for finding in FINDINGS:
        cand = np.array([float(r.scores[finding]) for r in rows])
        champ = np.array([float(r.champion_scores[finding]) for r in rows])
        out["findings"][finding] = {
            "mean_abs_difference": float(np.mean(np.abs(cand - champ))),
            "decision_agreement": float(np.mean((cand >= threshold) == (champ >= threshold))),
        }
    return out
