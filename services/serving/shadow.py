"""Shadow inference: admission of mirrored requests, and the candidate's agreement with the
champion. The mirroring itself is :func:`services.serving.flows.mirror`."""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
from sqlalchemy.orm import Session

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
    # The findings both versions scored (a spec names them; every version shares them).
    findings = [f for f in rows[0].scores if f in rows[0].champion_scores]
    for finding in findings:
        cand = np.array([float(r.scores[finding]) for r in rows])
        champ = np.array([float(r.champion_scores[finding]) for r in rows])
        out["findings"][finding] = {
            "mean_abs_difference": float(np.mean(np.abs(cand - champ))),
            "decision_agreement": float(np.mean((cand >= threshold) == (champ >= threshold))),
        }
    return out
