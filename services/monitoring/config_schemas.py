"""API models for declared monitors."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class MonitorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(..., min_length=1, max_length=128, description="Deployed model name.")
    name: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")
    spec: dict[str, Any] = Field(
        ..., description="Kind and parameters; see services/monitoring/specs.py and the README."
    )


class MonitorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    spec: dict[str, Any] | None = None
    active: bool | None = None


class MonitorOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    model_name: str
    name: str
    kind: str
    spec: dict[str, Any]
    active: bool
    version: int
    created_at: datetime
    updated_at: datetime
    updated_by: str


class MonitorChangeOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version: int
    change: str
    spec: dict[str, Any]
    active: bool
    changed_by: str
    changed_at: datetime
