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
from rich.markup import escape
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


def _print_error(message: str) -> None:
    """One line, whatever the terminal's width, and the message never read as markup."""
    err.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)


def fail(exc: RadwatchError) -> NoReturn:
    fail_message(exc.message, code=2 if exc.status_code < 500 else 1)


def fail_message(message: str, *, code: int = 2) -> NoReturn:
    """End the command with one error line: exit 2 on input the user can fix, 1 when a
    dependency or the system is at fault."""
    _print_error(message)
    raise typer.Exit(code)


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
