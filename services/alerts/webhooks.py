"""Signed webhook deliveries: payload, signature, retry schedule and one POST. The sweep that
sends the outbox is :mod:`services.alerts.flows`.

**What a receiver gets.** ``POST <url>`` with a JSON body
``{"schema_version": 1, "event": "alert.opened" | "alert.acknowledged" | "alert.resolved",
"alert": {id, monitor, model_name, site, severity, state, detail, opened_at, acknowledged_at,
resolved_at}}`` and the headers ``X-Radwatch-Event``, ``X-Radwatch-Delivery`` (the delivery id:
the same on every retry of one delivery, so receivers can drop repeats), ``X-Radwatch-Timestamp``
(unix seconds of this attempt) and ``X-Radwatch-Signature: sha256=<hex>``, the HMAC-SHA256 of
``f"{timestamp}.".encode() + raw_body`` keyed with the subscription's secret (UTF-8). The body
holds alert fields only: no notes (free text that could hold patient details), no key names.

**Guarantees.** At least once: an attempt whose outcome could not be recorded is sent again, so
receivers should de-duplicate by ``X-Radwatch-Delivery``. No ordering across deliveries: a retried
``alert.opened`` can arrive after ``alert.acknowledged``; each body carries the alert's state and
timestamps at the time of its event, so the newest timestamp wins.

**Verifying (receiver side).** :func:`verify_signature` is the reference; in a receiver without
radwatch installed::

    import hashlib, hmac, time

    def verify(secret: str, body: bytes, timestamp: str, signature: str) -> bool:
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > 300:
            return False  # stale or future: a replay
        mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
        return hmac.compare_digest("sha256=" + mac.hexdigest(), signature)

Check the raw bytes as received, before parsing the JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from services.core.models import Alert, as_utc
from services.core.settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
#: Receivers reject timestamps further than this from their clock (replay protection).
TOLERANCE_S = 300
USER_AGENT = "radwatch-webhooks/1"

Clock = Callable[[], datetime]


# --- payload and signature ----------------------------------------------------------------------


def iso_utc(value: datetime | None) -> str | None:
    """ISO 8601 in UTC, or None. SQLite hands back naive datetimes, which are UTC here."""
    if value is None:
        return None
    return as_utc(value).isoformat()


def payload(event: str, alert: Alert) -> dict[str, Any]:
    """The body of an event: the alert as it is now, alert fields only."""
    return {
        "schema_version": SCHEMA_VERSION,
        "event": event,
        "alert": {
            "id": alert.id,
            "monitor": alert.monitor,
            "model_name": alert.model_name,
            "site": alert.site,
            "severity": alert.severity,
            "state": str(alert.state),
            "detail": alert.detail,
            "opened_at": iso_utc(alert.opened_at),
            "acknowledged_at": iso_utc(alert.acknowledged_at),
            "resolved_at": iso_utc(alert.resolved_at),
        },
    }


def encode(body: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed: compact, key-sorted JSON."""
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: int, raw_body: bytes) -> str:
    """The ``X-Radwatch-Signature`` value for a body sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + raw_body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str,
    raw_body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Receiver-side check: the signature matches (constant-time) and the timestamp is within
    ``tolerance_s`` seconds of ``now`` (default: this machine's clock), which stops replays of a
    captured request."""
    if not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, int(timestamp), raw_body), signature)


# --- retry schedule -----------------------------------------------------------------------------


def backoff_s(attempt: int, settings: Settings) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): base * 3**(n-1), capped.
    With the defaults: 10 s, 30 s, 90 s, 270 s, 810 s, 2430 s, 3600 s, so 8 attempts span about
    2 h, long enough to ride out a receiver's restart or deploy, short enough to page someone."""
    return float(
        min(settings.webhook_backoff_s * 3 ** (attempt - 1), settings.webhook_backoff_max_s)
    )


def lease_s(settings: Settings) -> float:
    """How long a claimed delivery stays invisible to other workers. An attempt's connect, write
    and read each wait at most the timeout, and the body is never read, so four timeouts plus a
    margin outlasts any attempt; a worker that died mid-send is retried when the lease ends."""
    return 4 * settings.webhook_timeout_s + 30


# --- sending ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    ok: bool
    status_code: int | None
    error: str | None


def target(url: str) -> str:
    """What logs show of a URL: scheme, host and port. Paths and queries are left out because
    some receivers (chat webhooks) put their own credentials there."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def post(
    client: httpx.Client,
    *,
    url: str,
    secret: str,
    event: str,
    delivery_id: int,
    raw: bytes,
    ts: int,
) -> Attempt:
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Radwatch-Event": event,
        "X-Radwatch-Delivery": str(delivery_id),
        "X-Radwatch-Timestamp": str(ts),
        "X-Radwatch-Signature": sign(secret, ts, raw),
    }
    try:
        # Streamed and never read: only the status matters, and a receiver that drips out a
        # large body cannot hold the worker.
        with client.stream("POST", url, content=raw, headers=headers) as response:
            code = response.status_code
    except httpx.TimeoutException as exc:
        return Attempt(False, None, f"timeout ({type(exc).__name__})")
    except httpx.HTTPError as exc:
        return Attempt(False, None, f"connection error ({type(exc).__name__})")
    if 200 <= code < 300:
        return Attempt(True, code, None)
    return Attempt(False, code, f"HTTP {code}")
