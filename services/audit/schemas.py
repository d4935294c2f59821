"""Response bodies of ``/v1/audit``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditRecordOut(BaseModel):
    """One record as stored, with the hashes that chain it, so a reader can re-check it."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str = Field(description="Who: an API key's or user's name, or monitoring/worker/system.")
    action: str = Field(description="What, e.g. `alert.acknowledged`.")
    entity_type: str
    entity_id: str
    reason: str | None
    payload: dict[str, Any]
    prev_hash: str
    hash: str


class AuditPage(BaseModel):
    items: list[AuditRecordOut]
    next_after: int | None = Field(
        description="Pass as `after` for the next page; null when this page is the last."
    )


class AuditVerifyOut(BaseModel):
    ok: bool
    checked: int = Field(description="Records found intact (before the break, if any).")
    head: str = Field(
        description="Hash of the last intact record. Keep a copy outside radwatch: a later "
        "`radwatch audit verify --anchor <head>` then also catches a cut or rewritten tail."
    )
    broken_id: int | None = Field(description="The first record that fails the check.")
    reason: str | None = Field(
        description="`content_edited` (hash does not match the content) or `chain_broken` "
        "(prev_hash does not match the previous record: a record was deleted, inserted or "
        "reordered)."
    )
    message: str | None
