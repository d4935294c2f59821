"""API models of promotion and rollback."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**62


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class PromotionIn(_In):
    version: int = Field(ge=1, le=MAX_ID)
    reason: str = Field(min_length=1, max_length=4000)


class AdvanceIn(_In):
    force: bool = Field(
        False, description="Advance before the rollout plan's studies/minutes (audited as forced)."
    )


class PromotionOut(_Out):
    id: int
    model_name: str
    kind: str
    from_version: int | None
    to_version: int
    stage: str
    state: str
    approval_request_id: int | None
    started_by: str
    reason: str
    error: str | None
    started_at: datetime
    finished_at: datetime | None


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=4000)
