from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict

MAX_ID = 2**62


class DeploymentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    model_name: str
    model_version: int
    mlflow_run_id: str
    triton_model: str
    role: str
    active: bool
    operating_threshold: float
    created_at: datetime
    loaded: bool | None = None


class RoutingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    model_name: str
    champion_version: int
    previous_champion_version: int | None
    candidate_version: int | None
    mode: str
    canary_share: float
    generation: int
    updated_at: datetime


class ShadowSummary(BaseModel):
    n: int
    latency_ms_p50: float | None = None
    findings: dict[str, dict[str, float]] = {}
