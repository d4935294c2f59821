"""Request and response bodies of the alert lifecycle and webhook endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from services.core.models import AlertState

__all__ = ["AlertActionIn", "AlertOut", "WebhookCreate", "WebhookCreated", "WebhookOut"]

#: Longest note on an acknowledgement or resolution, in characters.
MAX_NOTE = 2000
#: Longest webhook URL: the column's length (``HttpUrl`` alone allows 2,083).
MAX_URL = 2048
#: Largest id a path may name: ids are BIGINT, and a larger number would fail in the database.
MAX_ID = 2**63 - 1
#: Control characters a note may not hold. PostgreSQL text cannot store NUL at all; the others
#: have no business in a note. Tab and line breaks are fine.
_CONTROL = {chr(c) for c in range(32)} - {"\t", "\n", "\r"}


class AlertOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, protected_namespaces=())

    id: int
    monitor: str
    model_name: str
    site: str
    state: AlertState
    severity: str
    detail: str
    opened_after_predictions: int
    opened_at: datetime
    #: Lifecycle (``POST /v1/alerts/{id}/acknowledge`` and ``/resolve``): who, by API key name
    #: and id, when, and the note they left. ``None`` until that step happens; an alert resolved
    #: straight from open has no acknowledgement.
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    acknowledged_by_key_id: int | None = None
    acknowledged_note: str | None = None
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    resolved_by_key_id: int | None = None
    resolved_note: str | None = None


class AlertActionIn(BaseModel):
    """Optional body of ``POST /v1/alerts/{id}/acknowledge`` and ``/resolve``."""

    model_config = ConfigDict(extra="forbid")

    note: str | None = Field(
        default=None,
        max_length=MAX_NOTE,
        description="Free text for the record, e.g. what was found or done. Not sent to webhooks.",
    )

    @field_validator("note")
    @classmethod
    def _no_control_characters(cls, note: str | None) -> str | None:
        if note is not None and any(ch in _CONTROL for ch in note):
            raise ValueError("must not contain control characters other than tab and line breaks")
        return note


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl = Field(description="Where events are POSTed; http or https only.")
    secret: str | None = Field(
        default=None,
        min_length=32,
        max_length=256,
        description=(
            "HMAC-SHA256 key for the X-Radwatch-Signature header, at least 32 characters "
            "(e.g. `openssl rand -hex 32`). Leave it out to have a 256-bit one generated; either "
            "way it is returned once, in this response, and never again."
        ),
    )
    min_severity: Literal["warning", "critical"] = Field(
        default="warning",
        description="`warning` receives warning and critical alerts, `critical` only critical.",
    )

    @field_validator("url")
    @classmethod
    def _no_credentials(cls, url: HttpUrl) -> HttpUrl:
        if len(str(url)) > MAX_URL:
            raise ValueError(f"must be at most {MAX_URL} characters")
        # The URL is listed by GET /v1/webhooks; credentials in it would leak there. Receivers
        # authenticate radwatch by the signature instead.
        if url.username or url.password:
            raise ValueError(
                "must not contain a user name or password; verify the X-Radwatch-Signature "
                "header instead"
            )
        return url

    @field_validator("secret")
    @classmethod
    def _printable_secret(cls, secret: str | None) -> str | None:
        if secret is not None and (not secret.isprintable() or secret != secret.strip()):
            raise ValueError("must be printable characters without leading or trailing spaces")
        return secret


class WebhookOut(BaseModel):
    """A subscription as listed. Never carries the secret."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    active: bool
    min_severity: str
    created_at: datetime


class WebhookCreated(WebhookOut):
    """The create response: the only time the secret is shown."""

    secret: str = Field(description="Store it now: it is never shown again.")
