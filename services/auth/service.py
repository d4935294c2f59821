"""API-key authentication and role checks.

Keys look like ``rw_<prefix>_<secret>``. The prefix is stored in clear so an operator can tell
keys apart in listings; only the SHA-256 of the whole key is stored, so a database leak does not
leak usable keys.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from services.auth import repository
from services.core.errors import ForbiddenError, UnauthenticatedError
from services.core.models import ApiKey, Role


@dataclass(frozen=True)
class Principal:
    key_id: int
    name: str
    role: Role


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_key(session: Session, *, name: str, role: Role) -> str:
    """Create a key and return its plaintext, which is shown once and never stored."""
    prefix = secrets.token_hex(4)
    plaintext = f"rw_{prefix}_{secrets.token_urlsafe(32)}"
    repository.add(
        session, ApiKey(name=name, prefix=prefix, key_hash=hash_key(plaintext), role=role)
    )
    return plaintext


def authenticate(session: Session, plaintext: str | None) -> Principal:
    if not plaintext:
        raise UnauthenticatedError(
            "Missing API key. Send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>'; "
            "create one with `radwatch keys create --name NAME --role ROLE`."
        )
    key = repository.by_hash(session, hash_key(plaintext.strip()))
    if key is None:
        raise UnauthenticatedError("Unknown or revoked API key.")
    return Principal(key_id=key.id, name=key.name, role=key.role)


def require(principal: Principal, allowed: frozenset[Role]) -> Principal:
    if principal.role not in allowed:
        names = ", ".join(sorted(r.value for r in allowed))
        raise ForbiddenError(
            f"Role '{principal.role.value}' may not do this; it needs one of: {names}."
        )
    return principal
