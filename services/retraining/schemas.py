"""API models of retraining runs and evaluation dossiers."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_ID = 2**62


class RetrainingRequestIn(BaseModel):
    """Ask for a retraining run of the model's champion. Unset values come from the model's
    change protocol (``retraining.epochs``, ``retraining.seed``)."""

    model_config = ConfigDict(extra="forbid")

    reason: str = Field(
        min_length=3,
        max_length=2000,
        description="Why the model should be retrained (audited; write no patient identifiers).",
    )
    epochs: int | None = Field(None, ge=1, le=500, description="Passes over the recent data.")
    seed: int | None = Field(None, ge=0, lt=2**31, description="Seed of the whole run.")


class CandidateEvaluationIn(BaseModel):
    """Judge a registered candidate (an imported version) against the champion on a sequestered
    evaluation set, through Triton, on a training worker."""

    model_config = ConfigDict(extra="forbid")

    version: int = Field(ge=1, description="The candidate's registered version.")
    evaluation_set: str = Field(
        min_length=1,
        max_length=128,
        description="A set registered with `evaluation-sets register`.",
    )
    evaluation_set_version: int | None = Field(
        None, ge=1, description="Default: the set's newest version, pinned when the run is queued."
    )
    reason: str = Field(
        min_length=3,
        max_length=2000,
        description="Why this candidate should be judged (audited; write no patient identifiers).",
    )


class RetrainingRunOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    parent_version: int = Field(description="The champion version the candidate starts from.")
    state: Literal["queued", "running", "succeeded", "failed"]
    trigger: Literal["manual", "alert"]
    requested_by: str
    seed: int
    params: dict[str, Any] = Field(description="Resolved run parameters (policy + request).")
    lineage: dict[str, Any] = Field(
        description="Parent version, trigger alert ids, protocol version, data snapshot SHA-256, "
        "code version, replay source; the MLflow run carries the same as radwatch.* tags."
    )
    progress: float = Field(ge=0, le=1)
    message: str | None = Field(description="Current stage, or why the run failed.")
    candidate_version: int | None
    mlflow_run_id: str | None
    dossier_id: int | None = Field(None, description="The candidate's evaluation dossier.")
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class DossierOut(BaseModel):
    """A stored dossier; ``document`` has the layout of docs/retraining.md."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    model_name: str
    candidate_version: int
    champion_version: int
    retraining_run_id: int | None
    protocol_version: int
    passed: bool
    created_at: datetime
    document: dict[str, Any]
