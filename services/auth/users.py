"""People: sign-in for the web pages and re-authentication for signed decisions.

Passwords are hashed with scrypt (memory-hard; n=2**14, r=8, p=1, a 16-byte salt), unlike API keys
which are 256-bit random and only need SHA-256. A decision re-authenticates the person, with the
password itself or with a short-lived re-authentication token obtained by giving the password
(``issue_reauth_token``): an open session or an API key alone never signs anything.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from sqlalchemy.orm import Session

from services.audit import actions
from services.audit.service import record
from services.auth import repository
from services.core.errors import ConflictError, UnauthenticatedError, ValidationFailedError
from services.core.models import Role, User

_N, _R, _P = 2**14, 8, 1
MIN_PASSWORD = 10


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    b64 = base64.b64encode
    return f"scrypt${_N}${_R}${_P}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(stored: str, password: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=32,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


def by_name(session: Session, name: str) -> User | None:
    return repository.user_by_name(session, name)


def create_user(session: Session, *, name: str, role: Role, password: str, actor: str) -> User:
    name = name.strip()
    if not name or len(name) > 128:
        raise ValidationFailedError("A user name must be 1 to 128 characters.")
    if len(password) < MIN_PASSWORD:
        raise ValidationFailedError(f"A password needs at least {MIN_PASSWORD} characters.")
    if by_name(session, name) is not None:
        raise ConflictError(f"A user named '{name}' already exists.")
    user = User(name=name, role=role, password_hash=hash_password(password))
    repository.add_user(session, user)
    record(
        session,
        actor=actor,
        action=actions.USER_CREATED,
        entity_type=actions.USER,
        entity_id=name,
        payload={"role": role.value},
    )
    return user


def authenticate_password(session: Session, name: str, password: str) -> User:
    """The user, if the password is right; one message for every failure (no user probing)."""
    user = by_name(session, name)
    # Hash even for an unknown name, so the answer takes as long either way.
    ok = check_password(user.password_hash if user else hash_password("x" * MIN_PASSWORD), password)
    if user is None or user.disabled_at is not None or not ok:
        raise UnauthenticatedError("Wrong user name or password.")
    return user


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def issue_reauth_token(secret: str, name: str, *, now: float | None = None) -> str:
    """A token that proves ``name`` gave the password at ``now``; see ``check_reauth_token``."""
    issued = int(now if now is not None else time.time())
    payload = f"{name}|{issued}|{secrets.token_hex(8)}"
    raw = f"{payload}|{_sign(secret, payload)}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def check_reauth_token(
    secret: str, token: str, name: str, *, max_age_s: int, now: float | None = None
) -> None:
    try:
        raw = base64.urlsafe_b64decode(token.encode()).decode()
        who, issued, nonce, sig = raw.split("|")
    except (ValueError, UnicodeDecodeError):
        raise UnauthenticatedError("Invalid re-authentication token.") from None
    if not hmac.compare_digest(sig, _sign(secret, f"{who}|{issued}|{nonce}")) or who != name:
        raise UnauthenticatedError("Invalid re-authentication token.")
    age = (now if now is not None else time.time()) - int(issued)
    if age > max_age_s or age < -60:
        raise UnauthenticatedError(
            f"The re-authentication token is older than {max_age_s} s; enter the password again."
        )


def reauthenticate(
    session: Session,
    *,
    secret: str,
    max_age_s: int,
    name: str,
    password: str | None,
    token: str | None,
) -> str:
    """Check that the person ``name`` has just proved who they are; returns the method used."""
    if by_name(session, name) is None:
        raise UnauthenticatedError(
            f"There is no user account named '{name}'. A signed decision needs a person's "
            "account (radwatch users create); an API key alone cannot sign."
        )
    if password:
        authenticate_password(session, name, password)
        return "password"
    if token:
        check_reauth_token(secret, token, name, max_age_s=max_age_s)
        return "token"
    raise UnauthenticatedError(
        "A decision must be re-authenticated: send 'password', or a 'reauth_token' from "
        "POST /v1/auth/reauth."
    )
