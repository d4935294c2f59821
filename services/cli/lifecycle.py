"""``radwatch users``, ``radwatch promote`` and ``radwatch rollback``: the lifecycle from a shell.

They talk to the database, MLflow and Triton directly with the RADWATCH_* settings (the same
services the API calls), and record the OS user as ``cli:<user>`` in the audit trail.
"""

from __future__ import annotations

import getpass
import sys
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from services.core.errors import RadwatchError

if TYPE_CHECKING:
    from services.core.settings import Settings
    from services.lifecycle.promotion import Lifecycle

users_app = typer.Typer(help="People who sign in and sign decisions.", no_args_is_help=True)
promote_app = typer.Typer(
    help="Promote an approved candidate: shadow -> canary -> champion.", no_args_is_help=True
)
err = Console(stderr=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _fail(exc: RadwatchError) -> None:
    err.print(f"[red]error:[/red] {exc.message}")
    raise typer.Exit(2 if exc.status_code < 500 else 1)


def _ctx() -> tuple[Lifecycle, Settings]:
    from services.core.db import make_engine, make_sessionmaker
    from services.core.settings import get_settings
    from services.lifecycle.promotion import Lifecycle
    from services.registry.mlflow_registry import MlflowRegistry
    from services.serving.client import TritonClient

    settings = get_settings()
    return Lifecycle(
        sessions=make_sessionmaker(make_engine(settings.resolved_database_url)),
        registry=MlflowRegistry(settings.resolved_mlflow_uri),
        triton=TritonClient(settings.triton_url),
        repository_dir=settings.triton_repository,
    ), settings


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
    from services.core.db import make_engine, make_sessionmaker, session_scope
    from services.core.models import Role
    from services.core.settings import get_settings

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
    sessions = make_sessionmaker(make_engine(get_settings().resolved_database_url))
    try:
        with session_scope(sessions) as session:
            create_user(session, name=name, role=parsed, password=password, actor=_actor())
    except RadwatchError as exc:
        _fail(exc)
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
    from services.lifecycle import promotion

    ctx, settings = _ctx()
    name = model or settings.model_name
    try:
        run_id = ctx.registry.get_version(name, version).run_id
        pid = promotion.start(
            ctx, model_name=name, version=version, actor=_actor(), reason=reason, run_id=run_id
        )
    except RadwatchError as exc:
        _fail(exc)
    typer.echo(f"promotion {pid}: {name} version {version} is in shadow")
    if wait:
        _wait(ctx, name)


def _wait(ctx: Lifecycle, name: str) -> None:
    from services.core.db import session_scope
    from services.core.errors import ConflictError
    from services.lifecycle import promotion

    while True:
        with session_scope(ctx.sessions) as session:
            current = promotion.current(session, name)
            if current is None:
                typer.echo(f"{name}: promotion finished")
                return
            stage = current.stage
        try:
            promotion.advance(ctx, model_name=name, actor=_actor())
            typer.echo(f"{name}: advanced from {stage}")
        except ConflictError as exc:
            err.print(f"[dim]{exc.message}[/dim]")
            time.sleep(5)
        except RadwatchError as exc:
            _fail(exc)


@promote_app.command("advance")
def promote_advance(
    model: Annotated[str | None, typer.Option()] = None,
    force: Annotated[
        bool, typer.Option(help="Advance before the plan's studies/minutes (audited).")
    ] = False,
) -> None:
    """Move the promotion one stage on (shadow -> canary -> champion)."""
    from services.lifecycle import promotion

    ctx, settings = _ctx()
    name = model or settings.model_name
    try:
        pid = promotion.advance(ctx, model_name=name, actor=_actor(), force=force)
    except RadwatchError as exc:
        _fail(exc)
    typer.echo(f"promotion {pid} advanced")


def rollback(
    reason: Annotated[str, typer.Option(help="Why, for the audit trail.")],
    model: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Restore the previous champion (or abort a promotion still in shadow or canary)."""
    from services.lifecycle import promotion

    ctx, settings = _ctx()
    name = model or settings.model_name
    try:
        rid = promotion.rollback(ctx, model_name=name, actor=_actor(), reason=reason)
    except RadwatchError as exc:
        _fail(exc)
    typer.echo(f"rollback {rid}: {name} serves its previous champion again")
