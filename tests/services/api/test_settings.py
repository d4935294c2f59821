from __future__ import annotations

import pytest
from pydantic import ValidationError

from services.core.pseudonym import pseudonymise
from services.core.settings import Settings


def test_production_refuses_the_development_pseudonym_key() -> None:
    with pytest.raises(ValidationError, match="PSEUDONYM_KEY"):
        Settings(environment="production", database_url="postgresql+psycopg://x@y/z")


def test_production_refuses_sqlite() -> None:
    with pytest.raises(ValidationError, match="PostgreSQL"):
        Settings(environment="production", pseudonym_key="s3cret", session_secret="s3cret-too")


def test_production_refuses_the_development_session_secret() -> None:
    with pytest.raises(ValidationError, match="SESSION_SECRET"):
        Settings(
            environment="production",
            pseudonym_key="s3cret",
            database_url="postgresql+psycopg://db/radwatch",
        )


def test_persistence_k_cannot_exceed_m() -> None:
    with pytest.raises(ValidationError, match="PERSISTENCE"):
        Settings(monitor_persistence_k=4, monitor_persistence_m=3)


def test_pseudonyms_are_stable_keyed_and_kind_separated() -> None:
    a = pseudonymise("12345", "k1", kind="study")
    assert a == pseudonymise("12345", "k1", kind="study")
    assert a != pseudonymise("12345", "k2", kind="study")
    assert a != pseudonymise("12345", "k1", kind="patient")
    assert "12345" not in a
