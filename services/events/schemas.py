"""API models for prediction requests and responses."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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
