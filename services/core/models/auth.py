"""Who may call the API (keys) and who signs decisions (people)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Enum, String
from sqlalchemy.orm import Mapped, mapped_column

from services.core.models.base import Base, BigIntPK, Role, _enum_values, utcnow


class ApiKey(Base):
    """An API key. Only the SHA-256 of the secret is stored; keys are 256-bit random tokens, so a
    fast hash is enough (no password-style stretching is needed for high-entropy secrets)."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    prefix: Mapped[str] = mapped_column(String(16), index=True)
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=32, values_callable=_enum_values)
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class User(Base):
    """A person who signs in to the web pages and re-authenticates to sign a decision.

    API keys stay the machine credential; a user's name is the identity that the four-eyes rule
    compares, so an API key acting for a person carries the same name. The password is stored as
    a salted scrypt hash (``scrypt$n$r$p$salt$hash``): passwords are low-entropy, so unlike API
    keys they need a deliberately slow hash.
    """

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[Role] = mapped_column(
        Enum(Role, native_enum=False, length=32, values_callable=_enum_values)
    )
    password_hash: Mapped[str] = mapped_column(String(256))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(default=None)
