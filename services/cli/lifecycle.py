"""``radwatch users``, ``radwatch promote`` and ``radwatch rollback``: the lifecycle from a shell.

They talk to the database, MLflow and Triton directly with the RADWATCH_* settings (the same
services the API calls), and record the OS user as ``cli:<user>`` in the audit trail.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer

from services.cli.common import actor as _actor
from services.cli.common import err, fail, runtime
from services.core.errors import RadwatchError

if TYPE_CHECKING:
    from services.core.runtime import Runtime

users_app = typer.Typer(help="People who sign in and sign decisions.", no_args_is_help=True)
promote_app = typer.Typer(
    help="Promote an approved candidate: shadow -> canary -> champion.", no_args_is_help=True
)


@users_app.command("create")
def users_create(
    name: Annotated[str, typer.Argument(help="The person's name as they sign in.")],
    role: Annotated[str, typer.Option(help="clinical_safety_officer, mlops_engineer, auditor.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin.")
    ] = False,
) -> None:
    """Create a user account (password asked twice unless --password-stdin)."""
    from services.auth.users import create_user
    from services.cli.common import sessions
    from services.core.db import session_scope
    from services.core.models import Role

    try:
        parsed = Role(role)
    except ValueError:
        err.print(
            f"[red]error:[/red] unknown role '{role}'; use {', '.join(r.value for r in Role)}."
        )
        raise typer.Exit(2) from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        with sessions() as factory, session_scope(factory) as session:
            create_user(session, name=name, role=parsed, password=password, actor=_actor())
    except RadwatchError as exc:
        fail(exc)
    typer.echo(f"user '{name}' created with role {parsed.value}")


@promote_app.command("start")
def promote_start(
    version: Annotated[int, typer.Option(help="The approved candidate version.")],
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    model: Annotated[str | None, typer.Option()] = None,
    wait: Annotated[
        bool, typer.Option(help="Advance through canary to champion as the plan allows.")
    ] = False,
) -> None:
    """Load the candidate on Triton and start shadow traffic (needs an approved sign-off)."""
    from services.promotion import flows as promotion

    with runtime() as rt:
        name = model or rt.settings.model_name
        try:
            run_id = rt.registry.get_version(name, version).run_id
            pid = promotion.start(
                rt, model_name=name, version=version, actor=_actor(), reason=reason, run_id=run_id
            )
        except RadwatchError as exc:
            fail(exc)
        typer.echo(f"promotion {pid}: {name} version {version} is in shadow")
        if wait:
            _wait(rt, name)


def _wait(rt: Runtime, name: str) -> None:
    from services.core.db import session_scope
    from services.core.errors import ConflictError
    from services.promotion import flows as promotion
    from services.promotion import repository

    while True:
        with session_scope(rt.sessions) as session:
            current = repository.in_progress(session, name)
            if current is None:
                typer.echo(f"{name}: promotion finished")
                return
            stage = current.stage
        try:
            promotion.advance(rt, model_name=name, actor=_actor())
            typer.echo(f"{name}: advanced from {stage}")
        except ConflictError as exc:
            err.print(f"[dim]{exc.message}[/dim]")
            time.sleep(5)
        except RadwatchError as exc:
            fail(exc)


@promote_app.command("advance")
def promote_advance(
    model: Annotated[str | None, typer.Option()] = None,
    force: Annotated[
        bool, typer.Option(help="Advance before the plan's studies/minutes (audited).")
    ] = False,
) -> None:
    """Move the promotion one stage on (shadow -> canary -> champion)."""
    from services.promotion import flows as promotion

    with runtime() as rt:
        name = model or rt.settings.model_name
        try:
            pid = promotion.advance(rt, model_name=name, actor=_actor(), force=force)
        except RadwatchError as exc:
            fail(exc)
    typer.echo(f"promotion {pid} advanced")


def rollback(
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    model: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Restore the previous champion (or abort a promotion still in shadow or canary)."""
    from services.promotion import flows as promotion

    with runtime() as rt:
        name = model or rt.settings.model_name
        try:
            rid = promotion.rollback(rt, model_name=name, actor=_actor(), reason=reason)
        except RadwatchError as exc:
            fail(exc)
    typer.echo(f"rollback {rid}: {name} serves its previous champion again")
