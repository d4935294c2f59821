"""The web session cookie and the CSRF tokens of the sign-off pages.

The session is a signed cookie, not a server-side row: ``base64url(name|role|issued_at)`` and an
HMAC-SHA256 over it keyed with ``settings.session_secret``. Signing, not encrypting: the cookie
holds nothing secret (a name and a role), and the signature stops anyone from forging or editing
it. Every MAC is computed over a purpose label first (``radwatch-ui-session``,
``radwatch-ui-csrf``), so a value signed for one purpose (or a re-authentication token, which is
signed with the same secret) can never be replayed as another.

CSRF: every browser gets a random nonce in its own cookie; each form carries
``HMAC(secret, nonce|subject)``, where the subject is the signed-in user's name (empty on the
sign-in form). A forged cross-site POST has neither the nonce nor the secret, and a token lifted
from one person's page is worthless in another person's session. The session cookie is also
``SameSite=Lax``, so browsers do not send it on cross-site POSTs at all; the token is the second
line. Signing out only deletes the cookie (there is no server-side session to revoke), so a copied
cookie stays valid until ``session_max_age_s``; a decision always needs the password again anyway.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from services.core.errors import ForbiddenError
from services.core.models import Role

SESSION_COOKIE = "rw_session"
CSRF_COOKIE = "rw_csrf"
#: The cookies are sent to the pages only, never to the JSON API under /v1.
COOKIE_PATH = "/ui"
#: Clock skew tolerated between API replicas, in seconds.
MAX_SKEW_S = 60

_SESSION_PURPOSE = "radwatch-ui-session"
_CSRF_PURPOSE = "radwatch-ui-csrf"


@dataclass(frozen=True)
class WebSession:
    name: str
    role: Role
    issued_at: int


def _mac(secret: str, purpose: str, payload: str) -> str:
    message = f"{purpose}\n{payload}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def issue_session(secret: str, name: str, role: Role, *, now: float | None = None) -> str:
    issued = int(now if now is not None else time.time())
    payload = f"{name}|{role.value}|{issued}"
    encoded = base64.urlsafe_b64encode(payload.encode()).decode().rstrip("=")
    return f"{encoded}.{_mac(secret, _SESSION_PURPOSE, payload)}"


def read_session(
    secret: str, value: str | None, *, max_age_s: int, now: float | None = None
) -> WebSession | None:
    """The session in ``value``, or None when it is missing, forged, edited or too old."""
    if not value or "." not in value:
        return None
    encoded, mac = value.rsplit(".", 1)
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not hmac.compare_digest(mac, _mac(secret, _SESSION_PURPOSE, payload)):
        return None
    # A name may contain '|'; the role and the time never do, so split from the right.
    parts = payload.rsplit("|", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    name, role_value, issued_text = parts
    try:
        role = Role(role_value)
    except ValueError:
        return None
    issued = int(issued_text)
    age = (now if now is not None else time.time()) - issued
    if age > max_age_s or age < -MAX_SKEW_S:
        return None
    return WebSession(name=name, role=role, issued_at=issued)


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(secret: str, nonce: str, subject: str) -> str:
    """The token a form carries for the browser holding ``nonce`` and the user ``subject``."""
    return _mac(secret, _CSRF_PURPOSE, f"{nonce}|{subject}")


def check_csrf(secret: str, nonce: str | None, subject: str, token: str | None) -> None:
    if not nonce:
        raise ForbiddenError(
            "This form could not be accepted: the browser sent no security cookie. Allow cookies "
            "for this site, reload the page and submit again. Nothing was changed."
        )
    if not token or not hmac.compare_digest(token, csrf_token(secret, nonce, subject)):
        raise ForbiddenError(
            "This form could not be accepted: it is out of date or did not come from this site "
            "(CSRF check). Reload the page and submit again. Nothing was changed."
        )
