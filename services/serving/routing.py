"""Which model version answers a request, and which one only listens (shadow).

One ``model_routing`` row per model holds the whole decision (champion, candidate, mode, canary
share), so a promotion step changes it in one UPDATE and a request never sees half a change.
Canary assignment is sticky per study: the same pseudonymised study id always lands on the same
arm, so a re-sent study gets the same answer.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy.orm import Session

from services.core.models import Deployment, ModelRouting, RoutingMode
from services.serving import repository
from services.serving.service import champion as champion_deployment


@dataclass(frozen=True)
class Route:
    """``answer`` answers the request; ``shadow`` (if any) gets a mirrored copy, never returned."""

    answer: Deployment
    shadow: Deployment | None
    champion: Deployment
    arm: RoutingMode


def canary_bucket(key: str) -> float:
    """A stable number in [0, 1) from a study pseudonym."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 2**32


def get_routing(session: Session, model_name: str) -> ModelRouting | None:
    return repository.routing(session, model_name)


def route(session: Session, model_name: str, study_key: str) -> Route:
    champ = champion_deployment(session, model_name)
    routing = get_routing(session, model_name)
    if routing is None or routing.mode == RoutingMode.CHAMPION or routing.candidate_version is None:
        return Route(answer=champ, shadow=None, champion=champ, arm=RoutingMode.CHAMPION)
    candidate = repository.by_version(session, model_name, routing.candidate_version)
    if candidate is None:  # routing names a version that has no deployment row: serve champion
        return Route(answer=champ, shadow=None, champion=champ, arm=RoutingMode.CHAMPION)
    if routing.mode == RoutingMode.SHADOW:
        return Route(answer=champ, shadow=candidate, champion=champ, arm=RoutingMode.SHADOW)
    if routing.mode == RoutingMode.CANARY and canary_bucket(study_key) < routing.canary_share:
        return Route(answer=candidate, shadow=None, champion=champ, arm=RoutingMode.CANARY)
    return Route(answer=champ, shadow=None, champion=champ, arm=RoutingMode.CHAMPION)
