"""``radwatch evaluation-sets`` and ``radwatch candidates``: judge a candidate that radwatch did
not train on a sequestered evaluation set, through Triton, and ask for sign-off.

``evaluation-sets register`` stores labelled DICOM studies (a folder, or a parquet table with a
``path`` column and optional ``site`` and metadata columns) with a CSV of labels (``study_id``
and one 0/1 column per finding) as the next version of a named set. ``candidates evaluate``
writes the dossier of a registered candidate version against the deployed champion on that set
and opens its approval request; the safety officer signs on the ``/ui`` pages, then
``radwatch promote start`` moves it through shadow and canary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from services.cli.common import actor, fail, fail_message, runtime
from services.core.errors import RadwatchError

evaluation_sets_app = typer.Typer(
    help="Sequestered evaluation sets for dossiers of imported candidates.", no_args_is_help=True
)
candidates_app = typer.Typer(
    help="Judge a candidate radwatch did not train and ask for sign-off.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@evaluation_sets_app.command("register")
def register(
    name: Annotated[str, typer.Option("--name", help="The set's name.")],
    studies: Annotated[
        Path, typer.Option(help="A directory of DICOM files, or a .parquet table of their paths.")
    ],
    labels: Annotated[Path, typer.Option(help="CSV: study_id and one 0/1 column per finding.")],
    as_json: JsonOpt = False,
) -> None:
    """Check, hash and store labelled studies as the next version of an evaluation set."""
    from services.core.db import session_scope
    from services.registry.evaluation_sets import register as register_set

    for path in (studies, labels):
        if not path.exists():
            fail_message(f"{path} does not exist.")
    with runtime() as rt:
        try:
            with session_scope(rt.sessions) as session:
                info = register_set(
                    rt.registry,
                    name=name,
                    studies=studies,
                    labels_csv=labels,
                    session=session,
                    actor=actor(),
                )
        except RadwatchError as exc:
            fail(exc)
    out = {
        "name": info.name,
        "version": info.version,
        "sha256": info.sha256,
        "studies": info.studies,
    }
    typer.echo(
        json.dumps(out)
        if as_json
        else f"evaluation set {info.name} version {info.version}: {info.studies} studies, "
        f"sha256 {info.sha256[:12]}…"
    )


@evaluation_sets_app.command("list")
def list_versions(
    name: Annotated[str, typer.Argument(help="The set's name.")], as_json: JsonOpt = False
) -> None:
    """Every version of an evaluation set."""
    with runtime() as rt:
        try:
            infos = rt.registry.evaluation_set_versions(name)
        except RadwatchError as exc:
            fail(exc)
    rows: list[dict[str, Any]] = [
        {
            "version": i.version,
            "sha256": i.sha256,
            "studies": i.studies,
            "created_at": i.created_at.isoformat(),
        }
        for i in infos
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    if not rows:
        typer.echo(f"no evaluation set named {name}")
    for r in rows:
        typer.echo(f"{name} v{r['version']}: {r['studies']} studies, sha256 {r['sha256'][:12]}…")


@candidates_app.command("evaluate")
def evaluate(
    model: Annotated[str, typer.Option("--model", help="Registered and deployed model name.")],
    version: Annotated[int, typer.Option("--version", min=1, help="The candidate version.")],
    evaluation_set: Annotated[str, typer.Option(help="Evaluation set name.")],
    evaluation_set_version: Annotated[
        int | None, typer.Option(min=1, help="Default: the newest.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the candidate's dossier against the champion and open its approval request."""
    from services.core.progress import stage_progress
    from services.retraining.flows.candidates import evaluate_candidate

    with runtime() as rt, stage_progress() as progress:
        try:
            done = evaluate_candidate(
                rt,
                model_name=model,
                candidate_version=version,
                evaluation_set=evaluation_set,
                evaluation_set_version=evaluation_set_version,
                requested_by=actor(),
                progress=progress,
            )
        except RadwatchError as exc:
            fail(exc)
    if as_json:
        typer.echo(json.dumps(done.__dict__))
        return
    verdict = "PASSES" if done.passed else "FAILS"
    failed = [c for c, ok in done.criteria.items() if not ok]
    typer.echo(
        f"dossier {done.dossier_id} {verdict} its criteria"
        + (f" (failed: {', '.join(failed)})" if failed else "")
        + f"; approval request {done.approval_request_id} awaits a clinical safety officer"
    )
