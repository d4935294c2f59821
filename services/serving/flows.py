"""Serving flows (they own their transactions).

:func:`mirror`: shadow inference. The candidate scores a mirrored copy of a live request after
the champion's response has been sent (a FastAPI background task), on its own short
transaction, so neither its latency nor its failure reaches the clinician. A probe candidate
needs ``probes`` (the runtime's cache of heads), as the gateway does. Results go to
``shadow_predictions`` next to the champion's event id, for comparison before canary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy.orm import Session, sessionmaker

from pipelines.preprocess import prepare
from services.core.db import session_scope
from services.core.models import Deployment, ShadowPrediction
from services.core.ports import InferenceServer
from services.metrics.registry import SHADOW_PREDICTIONS
from services.serving import repository
from services.serving.service import ProbeLookup, infer_deployment, spec_of
from services.serving.shadow import budget

log = logging.getLogger(__name__)


def mirror(  # called only after admit() returned True
    sessions: sessionmaker[Session],
    triton: InferenceServer,
    *,
    candidate: Deployment,
    champion_version: int,
    event_id: str,
    champion_scores: Mapping[str, float],
    image: npt.NDArray[Any],
    probes: ProbeLookup | None = None,
) -> None:
    start = time.perf_counter()
    try:
        spec = spec_of(candidate)
        output = infer_deployment(triton, candidate, prepare(spec, [image]), probes=probes)
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
                    scores=output.scores(0),
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
