"""What every ``radwatch`` command shares: who is acting, how a domain error ends the command,
and the runtime (database, Triton, MLflow, broker) a command works with.

Errors a user can fix exit with code 2 and print the message only (never a traceback); a
dependency that is down (5xx) exits with 1.
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

import typer
from rich.console import Console
from sqlalchemy.orm import Session, sessionmaker

from services.core.errors import RadwatchError
from services.core.runtime import Runtime

err = Console(stderr=True)


def actor() -> str:
    """The audit trail's name for the person at this shell: ``cli:<OS user>``."""
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (some containers)
        return "cli"


def fail(exc: RadwatchError) -> NoReturn:
    err.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(2 if exc.status_code < 500 else 1)


def fail_message(message: str) -> NoReturn:
    """End the command on input the user can fix, before any domain error exists: exit 2."""
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(2)


@contextmanager
def runtime() -> Iterator[Runtime]:
    """The runtime of the RADWATCH_* settings, closed when the command ends."""
    from services.wiring import runtime_scope

    with runtime_scope() as rt:
        yield rt


@contextmanager
def sessions() -> Iterator[sessionmaker[Session]]:
    """Only the database, for commands that need nothing else (no Triton client is built)."""
    from services.core.db import make_engine, make_sessionmaker
    from services.core.settings import get_settings

    engine = make_engine(get_settings().resolved_database_url)
    try:
        yield make_sessionmaker(engine)
    finally:
        engine.dispose()
