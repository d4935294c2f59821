"""The hash chain as pure functions, so the live table and an exported file are checked by the
same code, and a regulator can check an export without radwatch's database.

**The hash.** A record's ``hash`` is the SHA-256 (lower-case hex) of the canonical JSON of its
content and its predecessor's hash::

    {"action", "actor", "at", "entity_id", "entity_type", "payload", "prev_hash", "reason"}

Canonical means Python's ``json.dumps(obj, sort_keys=True, separators=(",", ":"),
ensure_ascii=True, allow_nan=False)``: keys sorted at every level, no whitespace, non-ASCII
escaped as ``\\uXXXX`` (so the bytes hashed are plain ASCII and no encoding choice can differ),
and ``at`` written as ISO-8601 UTC with microseconds and a ``Z`` (``2026-11-30T12:00:00.123456Z``;
PostgreSQL ``timestamptz`` keeps microseconds, so the stored time re-hashes exactly). The first
record's ``prev_hash`` is :data:`GENESIS` (64 zeros).

**Why a chain.** Editing a record changes its content hash; deleting, inserting or reordering
records breaks the ``prev_hash`` link of the record after the change. An attacker who rewrites a
record *and* every hash after it is caught by comparing the chain head with one recorded outside
the database earlier (``anchor``): a hash chain alone cannot prove that its tail was not cut or
rewritten, only an outside copy of a later head can.
"""

from __future__ import annotations

import enum
import hashlib
import json
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import PurePath
from typing import Any, Literal
from uuid import UUID

from services.core.models import as_utc

#: ``prev_hash`` of the first record.
GENESIS = "0" * 64

#: The fields a record's hash covers, besides nothing else: ``id`` is left out on purpose, because
#: it is assigned by the database after the hash is computed (and a gap from a rolled-back
#: transaction is harmless); the order of records is protected by ``prev_hash`` instead.
HASHED_FIELDS = (
    "prev_hash",
    "at",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "reason",
    "payload",
)
#: The fields of one line of an export.
EXPORTED_FIELDS = ("id", *HASHED_FIELDS, "hash")

BreakReason = Literal["content_edited", "chain_broken", "malformed", "anchor_missing"]


def iso_utc(at: datetime) -> str:
    """The canonical time: UTC, microseconds, ``Z``. A naive time is taken as UTC, because SQLite
    hands back the stored UTC time without its zone."""
    return as_utc(at).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types, so that what is hashed is exactly what the JSON column
    stores and hands back (a tuple would come back as a list, a datetime as a string).

    Integers stay integers; floats stay floats unless they are not finite (JSON has no NaN, and
    PostgreSQL's ``json`` refuses it), which become the strings ``"nan"``, ``"inf"``, ``"-inf"``.
    Enums become their value, times their canonical string, sets a sorted list. Anything else
    (bytes, arbitrary objects) is refused rather than guessed at: an audit record must say
    exactly what happened.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, enum.Enum):
        return json_safe(value.value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        return f if math.isfinite(f) else str(f)
    if isinstance(value, datetime):
        return iso_utc(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, UUID | PurePath):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((json_safe(v) for v in value), key=canonical_json)
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    raise TypeError(
        f"audit payload values must be JSON-like (str, number, bool, None, list, dict, datetime, "
        f"enum); got {type(value).__name__}"
    )


def canonical_json(value: Any) -> str:
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    )


def record_hash(content: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of the :data:`HASHED_FIELDS` of ``content`` (``at`` as
    the canonical string, see :func:`iso_utc`)."""
    body = {name: content[name] for name in HASHED_FIELDS}
    return hashlib.sha256(canonical_json(body).encode("ascii")).hexdigest()


def export_line(record: Mapping[str, Any]) -> str:
    """One export line (no newline): every field including ``id``, ``prev_hash`` and ``hash``,
    in canonical JSON."""
    return canonical_json({name: record[name] for name in EXPORTED_FIELDS})


@dataclass(frozen=True)
class Break:
    """Where and why the chain is broken. ``record_id`` is the first record that fails (``None``
    when the line could not be read at all); ``line`` is set when checking a file."""

    record_id: int | None
    reason: BreakReason
    message: str
    line: int | None = None


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of a check.

    ``checked`` counts the records found intact (before the break, if any). ``head`` is the hash
    of the last intact record: record it somewhere outside the database and pass it as
    ``anchor`` later to detect a cut or rewritten tail. ``start`` is the ``prev_hash`` the checked
    stretch starts from (:data:`GENESIS` for a whole log; another hash for a partial export).
    """

    checked: int
    head: str
    start: str
    broken: Break | None

    @property
    def ok(self) -> bool:
        return self.broken is None


class ChainVerifier:
    """Checks records fed in chain order, one at a time, in constant memory.

    ``allow_partial`` accepts a first record whose predecessor is not in the input (an export
    made with ``since``); otherwise the first record must follow :data:`GENESIS`. ``anchor`` is a
    chain head recorded earlier: the check fails unless a record with that hash is seen.
    """

    def __init__(self, *, allow_partial: bool = False, anchor: str | None = None) -> None:
        self.allow_partial = allow_partial
        self.anchor = anchor
        self.anchor_seen = anchor is None
        self.checked = 0
        self.head = GENESIS
        self.start = GENESIS
        self.previous_id: int | None = None
        self.broken: Break | None = None

    def feed(self, record: Mapping[str, Any], *, line: int | None = None) -> Break | None:
        """Check one record (a mapping with :data:`EXPORTED_FIELDS`); returns the break, if this
        record is where the chain breaks. Feeding after a break is a no-op."""
        if self.broken is not None:
            return self.broken
        record_id = record.get("id")
        rid = record_id if isinstance(record_id, int) else None
        # Content first: an edited record is named as edited even when the edit touched its
        # prev_hash; a deletion leaves the next record's content intact and fails the link below.
        try:
            recomputed = record_hash(record)
        except (KeyError, TypeError, ValueError) as exc:
            return self.fail(rid, "malformed", f"record {rid}: not a valid record ({exc})", line)
        if recomputed != record.get("hash"):
            return self.fail(
                rid,
                "content_edited",
                f"record {rid}: its stored hash does not match its content; the record was "
                "edited after it was written",
                line,
            )
        prev_hash = record["prev_hash"]
        if prev_hash != self.head:
            if self.checked == 0 and self.allow_partial:
                self.start = prev_hash
            else:
                after = (
                    f"record {self.previous_id}" if self.previous_id is not None else "the genesis"
                )
                return self.fail(
                    rid,
                    "chain_broken",
                    f"record {rid}: its prev_hash does not match the hash of {after}; a record "
                    "between them was deleted or inserted, or records were reordered",
                    line,
                )
        self.checked += 1
        self.head = str(record["hash"])
        self.previous_id = rid
        if not self.anchor_seen and self.head == self.anchor:
            self.anchor_seen = True
        return None

    def fail(
        self, record_id: int | None, reason: BreakReason, message: str, line: int | None
    ) -> Break:
        """Stop the check here: the input itself is unreadable (used by :func:`verify_lines`)."""
        self.broken = Break(record_id=record_id, reason=reason, message=message, line=line)
        return self.broken

    def result(self) -> VerifyResult:
        """The outcome after the last record: a missing anchor counts as a break."""
        broken = self.broken
        if broken is None and not self.anchor_seen:
            broken = Break(
                record_id=None,
                reason="anchor_missing",
                message=f"no record has the anchor hash {self.anchor}; records at or before the "
                "anchored head were removed or rewritten (the tail was cut or the chain rebuilt)",
            )
        return VerifyResult(checked=self.checked, head=self.head, start=self.start, broken=broken)


def verify_lines(
    lines: Iterable[str], *, allow_partial: bool = False, anchor: str | None = None
) -> VerifyResult:
    """Verify an export (JSON lines, as written by ``export``) without any database.

    Blank lines are skipped; a line that is not a JSON object with every exported field breaks
    the check (``malformed``), naming its line number. ``allow_partial`` accepts an export that
    starts mid-chain (made with ``since``); a whole-log export must start at the genesis, so that
    dropping its first lines is detected.
    """
    verifier = ChainVerifier(allow_partial=allow_partial, anchor=anchor)
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            verifier.fail(None, "malformed", f"line {number} is not JSON ({exc.msg})", number)
            break
        if not isinstance(record, dict) or any(f not in record for f in EXPORTED_FIELDS):
            rid = record.get("id") if isinstance(record, dict) else None
            verifier.fail(
                rid if isinstance(rid, int) else None,
                "malformed",
                f"line {number} is not an audit record (it needs the fields "
                f"{', '.join(EXPORTED_FIELDS)})",
                number,
            )
            break
        if verifier.feed(record, line=number) is not None:
            break
    return verifier.result()
