"""Append to, verify and export the audit trail.

**Append.** :func:`record` adds one record inside the caller's transaction and never commits: the
record is durable exactly when the change it describes is, and vanishes with it on rollback.
Appends are serialized (:func:`services.audit.repository.lock_chain`), so each record's
``prev_hash`` is the hash of the record committed just before it. On PostgreSQL the lock is held
until the caller's transaction ends, so callers append as the *last* step of their change (after
their own row locks), which keeps the lock short and avoids lock-order deadlocks.

**Verify.** :func:`verify` re-hashes every record in id order and checks every link, streaming
the table; :func:`export` writes JSON lines that :func:`services.audit.chain.verify_lines` checks
with no database, so a regulator can re-verify offline with the documented hash recipe.

**No PHI.** Payloads carry only identifiers radwatch already stores as pseudonyms (model names,
versions, alert ids, monitor names, site codes) and never images, study or patient identifiers,
demographics or report text: the log can never be edited, so anything put in it stays forever.
``reason`` is free text typed by staff (an acknowledgement note, an approval's reason); the API
and UI tell them to write no patient identifiers there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from sqlalchemy import Row
from sqlalchemy.orm import Session

from services.audit import repository
from services.audit.chain import (
    GENESIS,
    ChainVerifier,
    VerifyResult,
    export_line,
    iso_utc,
    json_safe,
    record_hash,
)
from services.core.models import AuditRecord, utcnow

__all__ = ["GENESIS", "VerifyResult", "export", "list_records", "record", "verify"]

#: Column lengths of ``audit_log``; a longer value is a programming error, refused loudly rather
#: than truncated (a truncated audit record would say something other than what happened).
_LIMITS = {"actor": 128, "action": 64, "entity_type": 32, "entity_id": 128}


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str | int,
    reason: str | None = None,
    payload: Mapping[str, Any] | None = None,
) -> AuditRecord:
    """Append one record to the chain in the caller's transaction (flushed, never committed).

    ``actor`` is the principal's name, or :data:`~services.audit.actions.ACTOR_MONITORING` /
    ``ACTOR_WORKER`` / ``ACTOR_SYSTEM`` for automatic actions. ``action`` and ``entity_type``
    come from :mod:`services.audit.actions`. ``payload`` must hold no PHI (see the module
    docstring); it is stored as plain JSON (:func:`~services.audit.chain.json_safe`), exactly as
    it was hashed.
    """
    values = {
        "actor": actor,
        "action": action,
        "entity_type": entity_type,
        "entity_id": str(entity_id),
    }
    for name, value in values.items():
        if not value or len(value) > _LIMITS[name]:
            raise ValueError(f"audit {name} must be 1 to {_LIMITS[name]} characters: {value!r}")
    safe_payload = json_safe(dict(payload or {}))
    repository.lock_chain(session)
    prev_hash = repository.head_hash(session) or GENESIS
    # The time is taken after the lock, so record times follow chain order.
    at = utcnow()
    content = {
        **values,
        "prev_hash": prev_hash,
        "at": iso_utc(at),
        "reason": reason,
        "payload": safe_payload,
    }
    return repository.add(
        session,
        AuditRecord(
            at=at,
            actor=values["actor"],
            action=values["action"],
            entity_type=values["entity_type"],
            entity_id=values["entity_id"],
            reason=reason,
            payload=safe_payload,
            prev_hash=prev_hash,
            hash=record_hash(content),
        ),
    )


def _exported(row: Row[Any]) -> dict[str, Any]:
    """A stored row in the export's shape: the canonical time string, everything else as read."""
    return {
        "id": row.id,
        "at": iso_utc(row.at),
        "actor": row.actor,
        "action": row.action,
        "entity_type": row.entity_type,
        "entity_id": row.entity_id,
        "reason": row.reason,
        "payload": row.payload,
        "prev_hash": row.prev_hash,
        "hash": row.hash,
    }


def verify(session: Session, *, anchor: str | None = None, batch_size: int = 1000) -> VerifyResult:
    """Check the whole chain in id order and report the first broken record, if any.

    Streams the table (a server-side cursor on PostgreSQL), so memory stays flat for millions of
    records. ``anchor`` is a chain head recorded earlier outside the database; the check fails if
    no record carries it, which is how a cut or rebuilt tail is caught.
    """
    verifier = ChainVerifier(anchor=anchor)
    for row in repository.stream(session, batch_size=batch_size):
        if verifier.feed(_exported(row)) is not None:
            break
    return verifier.result()


def export(
    session: Session,
    out: TextIO,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    batch_size: int = 1000,
) -> int:
    """Write the records with ``since <= at < until`` to ``out`` as JSON lines, in id order, with
    ``id``, ``prev_hash`` and ``hash``; returns how many were written.

    A whole export starts at the genesis and verifies on its own; one made with ``since`` starts
    mid-chain and verifies with ``allow_partial`` (its first record's predecessor is not in it).
    """
    written = 0
    for row in repository.stream(session, since=since, until=until, batch_size=batch_size):
        out.write(export_line(_exported(row)))
        out.write("\n")
        written += 1
    return written


def list_records(
    session: Session,
    *,
    after_id: int = 0,
    limit: int = 100,
    entity_type: str | None = None,
    entity_id: str | None = None,
    action: str | None = None,
) -> Sequence[AuditRecord]:
    """A page of records with ``id > after_id``, oldest first (pass the last id to continue)."""
    return repository.page(
        session,
        after_id=after_id,
        limit=limit,
        entity_type=entity_type,
        entity_id=entity_id,
        action=action,
    )
