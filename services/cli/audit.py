"""``radwatch audit``: verify the audit trail's hash chain, and export it for someone who verifies
it without radwatch.

Exit codes: 0 the chain is intact; 1 it is broken (the message names the first broken record and
why); 2 the check could not run (database unreachable, unreadable file, bad option).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from services.audit.chain import GENESIS, VerifyResult
from services.core.models import as_utc

app = typer.Typer(
    help="The tamper-evident audit trail: verify its hash chain, export it.",
    no_args_is_help=True,
)


def _error(message: str) -> typer.Exit:
    # Plain echo, not rich: rich wraps long lines at the terminal width, which would split a
    # hash or a record id that a script greps for.
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@contextmanager
def _session() -> Iterator[Session]:
    """A read-only unit of work on the configured database (RADWATCH_DATABASE_URL)."""
    from services.cli.common import sessions
    from services.core.db import session_scope

    try:
        with sessions() as factory, session_scope(factory) as session:
            yield session
    except SQLAlchemyError as exc:
        raise _error(
            f"cannot read the audit log ({type(exc).__name__}); check RADWATCH_DATABASE_URL and "
            "that `radwatch db upgrade` has run."
        ) from None


def _when(value: str | None, option: str) -> datetime | None:
    """An ISO-8601 time; one without a zone is taken as UTC."""
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _error(
            f"{option} {value!r} is not an ISO-8601 time, e.g. 2026-11-30 or 2026-11-30T12:00Z."
        ) from None
    return as_utc(parsed)


def _report(result: VerifyResult, *, what: str) -> None:
    broken = result.broken
    if broken is None:
        start = "" if result.start == GENESIS else f", starting after {result.start}"
        typer.echo(f"verified {result.checked} records{start}, chain head {result.head}")
        return
    where = f"record {broken.record_id}" if broken.record_id is not None else what
    line = f" (line {broken.line})" if broken.line is not None else ""
    typer.echo(
        f"TAMPERED: {what} fails at {where}{line}: {broken.reason}: {broken.message}. "
        f"{result.checked} records before it are intact.",
        err=True,
    )
    raise typer.Exit(1)


@app.command()
def verify(
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Check an export (from `radwatch audit export`) offline, no database."
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial", help="With --file: the export was made with --since (starts mid-chain)."
        ),
    ] = False,
    anchor: Annotated[
        str | None,
        typer.Option(
            help="A chain head printed by an earlier verify and kept outside radwatch; fails if "
            "no record has it (catches a cut or rebuilt tail)."
        ),
    ] = None,
) -> None:
    """Re-hash every record and check every link; exit 1 naming the first broken record."""
    from services.audit import chain, service

    if file is not None:
        try:
            with file.open(encoding="utf-8") as lines:
                result = chain.verify_lines(lines, allow_partial=partial, anchor=anchor)
        except (OSError, UnicodeDecodeError) as exc:
            raise _error(f"cannot read {str(file)!r} ({exc}).") from None
        _report(result, what=str(file))
        return
    if partial:
        raise _error("--partial applies to --file only; the database holds the whole chain.")
    with _session() as session:
        result = service.verify(session, anchor=anchor)
    _report(result, what="the audit log")


@app.command()
def export(
    out: Annotated[str, typer.Option(help="File to write, or - for stdout.")] = "-",
    since: Annotated[
        str | None, typer.Option(help="Only records at or after this ISO-8601 time (UTC if bare).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Only records before this time.")] = None,
) -> None:
    """Write the records as JSON lines with their hashes, for `radwatch audit verify --file` or any
    re-implementation of the documented hash (docs/audit.md)."""
    from services.audit import service

    start, end = _when(since, "--since"), _when(until, "--until")
    with _session() as session:
        if out == "-":
            n = service.export(session, sys.stdout, since=start, until=end)
            sys.stdout.flush()
        else:
            try:
                with Path(out).open("w", encoding="utf-8") as fh:
                    n = service.export(session, fh, since=start, until=end)
            except OSError as exc:
                raise _error(f"cannot write {out!r} ({exc}).") from None
    partial = " (partial: verify it with --partial)" if start is not None else ""
    typer.echo(f"exported {n} records to {out}{partial}", err=True)
