"""API models for late ground-truth labels."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from services.events.schemas import RejectedEvent


class LabelIn(BaseModel):
    """Ground truth for one finding of one study, e.g. from the radiology report or a review."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    study_id: str = Field(
        ..., min_length=1, max_length=128, description="Raw study id; pseudonymised."
    )
    finding: str = Field(..., min_length=1, max_length=64, pattern=r"^[a-z0-9_]+$")
    label: bool = Field(..., description="true when the finding is present.")
    source: str = Field(
        ...,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.:\-]+$",
        description="Where the label comes from, e.g. 'report_nlp' or 'radiologist_review'.",
    )
    reported_at: AwareDatetime = Field(
        ..., description="When the source established it (ISO 8601 with a time zone)."
    )


class LabelIngestResult(BaseModel):
    """``duplicates`` lists the indices of labels already stored (same study, finding, source and
    reported_at): nothing was written for them."""

    received: int
    stored: int
    duplicates: list[int]
    rejected: list[RejectedEvent]
