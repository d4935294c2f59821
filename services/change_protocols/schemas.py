"""API models of change protocols."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

MAX_ID = 2**62


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ProtocolOut(_Out):
    model_name: str
    version: int
    document: dict[str, Any]
    created_by: str
    created_at: datetime
