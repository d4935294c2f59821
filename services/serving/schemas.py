from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict


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
