"""API models for prediction requests and responses."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator


class StudyMetadata(BaseModel):
    """What the gateway records with a prediction. Identifiers are pseudonymised before storage.

    For DICOM uploads, fields left empty here are read from the file's tags; fields given here
    win over the tags.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    study_id: str | None = Field(
        None, min_length=1, max_length=128, description="Raw study id; pseudonymised."
    )
    patient_id: str | None = Field(
        None, max_length=128, description="Raw patient id; pseudonymised."
    )
    site: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")
    event_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Client-chosen idempotency key; generated when absent.",
    )
    manufacturer: str | None = Field(None, max_length=64)
    manufacturer_model: str | None = Field(None, max_length=64)
    view_position: Literal["PA", "AP", "LL", "RL", "LAT"] | None = None
    kvp: float | None = Field(None, gt=20, lt=200, description="Tube voltage in kV.")
    sex: Literal["F", "M", "O"] | None = None
    age: float | None = Field(None, ge=0, le=130, description="Age in years.")
    race_ethnicity: str | None = Field(None, max_length=64)

    @field_validator("kvp", "age")
    @classmethod
    def _finite(cls, v: float | None) -> float | None:
        if v is not None and not math.isfinite(v):
            raise ValueError("must be a finite number")
        return v


class ArrayPredictionRequest(BaseModel):
    """An image as a 2-D array of grey values in [0, 1] (row-major nested lists)."""

    model_config = ConfigDict(extra="forbid")

    image: list[list[float]] = Field(..., description="2-D grey image, values in [0, 1].")
    metadata: StudyMetadata


class ModelRef(BaseModel):
    name: str
    version: int


class PredictionResponse(BaseModel):
    event_id: str
    study_pid: str = Field(description="Pseudonymised study id, for joining labels later.")
    model: ModelRef
    scores: dict[str, float] = Field(description="Probability per finding.")
    positive: dict[str, bool] = Field(description="Score at or above the operating threshold.")
    operating_threshold: float
    site: str
    duplicate: bool = Field(False, description="True when this event_id had already been recorded.")


# --- batch ingestion: events from producers that run inference elsewhere -----------------------

#: The longest embedding accepted (a ViT-L encoder has 1,024 dims; 4,096 leaves room).
MAX_EMBEDDING_DIM = 4096


class EventIn(BaseModel):
    """One prediction made elsewhere: what the model saw (metadata), said (scores) and encoded
    (embedding). ``metadata.study_id`` and ``metadata.site`` are required; ids are pseudonymised
    before storage."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    event_id: str = Field(
        ...,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Idempotency key: a retried event with the same id is stored once.",
    )
    model: str = Field(..., min_length=1, max_length=128, description="Deployed model name.")
    model_version: int = Field(..., ge=1, description="Deployed model version.")
    occurred_at: AwareDatetime | None = Field(
        None, description="When inference ran (ISO 8601 with a time zone)."
    )
    metadata: StudyMetadata
    scores: dict[str, float] = Field(
        ..., min_length=1, max_length=64, description="Probability per finding, each in [0, 1]."
    )
    embedding: list[float] = Field(..., min_length=1, max_length=MAX_EMBEDDING_DIM)
    image_stats: dict[str, float] = Field(
        default_factory=dict,
        max_length=64,
        description="Grey-level statistics of the image; the drift monitor reads 'mean', 'std', "
        "'p01' and 'p99' (a missing one is skipped).",
    )

    @field_validator("scores")
    @classmethod
    def _probabilities(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, p in v.items() if not 0.0 <= p <= 1.0]
        if bad:
            raise ValueError(f"scores must lie in [0, 1]; out of range: {', '.join(bad[:5])}")
        return v

    @model_validator(mode="after")
    def _required_metadata(self) -> EventIn:
        missing = [f for f in ("study_id", "site") if getattr(self.metadata, f) is None]
        if missing:
            raise ValueError(f"metadata.{' and metadata.'.join(missing)} required")
        if self.metadata.event_id is not None and self.metadata.event_id != self.event_id:
            raise ValueError("metadata.event_id differs from event_id; send event_id once")
        return self


class Problem(BaseModel):
    field: str
    problem: str


class RejectedEvent(BaseModel):
    index: int = Field(description="Position of the item in the request's list (from 0).")
    event_id: str | None = Field(None, description="Its id, when it had a readable one.")
    message: str
    problems: list[Problem]


class IngestResult(BaseModel):
    """Per item: stored, duplicate (already stored, nothing written) or rejected (with why)."""

    received: int
    stored: int
    duplicates: list[str] = Field(description="event_ids already stored; nothing was written.")
    rejected: list[RejectedEvent]
