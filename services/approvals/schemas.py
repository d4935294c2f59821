"""API models of sign-off: approval requests, signed decisions, re-authentication."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**62


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class DecisionOut(_Out):
    approver: str
    decision: str
    reason: str
    override: bool
    reauth: str = Field(description="How the signer re-authenticated: password or token.")
    signature: str = Field(description="SHA-256 of the signed content (see docs/lifecycle.md).")
    signed_at: datetime


class ApprovalOut(_Out):
    id: int
    model_name: str
    candidate_version: int
    dossier_id: int
    state: Literal["pending", "approved", "rejected", "withdrawn", "expired"]
    approver_role: str
    required_approvals: int
    criteria_passed: bool
    override: bool
    requested_by: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decisions: list[DecisionOut] = []


class DecisionIn(_In):
    decision: Literal["approve", "reject"]
    reason: str = Field(min_length=1, max_length=4000, description="Why; part of the signature.")
    password: str | None = Field(
        None, max_length=1024, description="Re-authentication: the signer's password, or..."
    )
    reauth_token: str | None = Field(
        None, max_length=1024, description="...a token from POST /v1/auth/reauth (5 minutes)."
    )
    override: bool = Field(
        False, description="Approve a candidate that failed its criteria (needs two approvers)."
    )


class ReasonIn(_In):
    reason: str = Field(min_length=1, max_length=4000)


class ReauthIn(_In):
    password: str = Field(min_length=1, max_length=1024)


class ReauthOut(BaseModel):
    token: str
    expires_in_s: int
