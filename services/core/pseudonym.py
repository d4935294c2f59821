"""Pseudonymisation of study and patient identifiers at the edge.

Identifiers are replaced by a keyed HMAC-SHA256 before anything is stored or logged. The key
stays with the deployment, so the same study always maps to the same pseudonym (late labels can
join their event) while the mapping cannot be reversed or recomputed without the key.
"""

from __future__ import annotations

import hashlib
import hmac


def pseudonymise(identifier: str, key: str, *, kind: str) -> str:
    """Return a stable pseudonym like ``st_3f2a...`` (24 hex chars, 96 bits).

    ``kind`` ("study" or "patient") is mixed into the MAC so a study id and a patient id that
    happen to be equal do not share a pseudonym.
    """
    mac = hmac.new(key.encode(), f"{kind}:{identifier.strip()}".encode(), hashlib.sha256)
    return f"{kind[:2]}_{mac.hexdigest()[:24]}"
