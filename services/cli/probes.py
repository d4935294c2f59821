"""``radwatch probes fit``: turn an embedding-only encoder into a classifier with linear heads.

The encoder must already be registered (``radwatch models import``) and Triton running; the
command makes the encoder version ready, runs the labelled studies through it, fits one head per
finding column of the labels file, and registers the probe as a new version of ``--name`` with
its reference profile. Deploy it with ``radwatch deploy --model-name PROBE --version V``.
Bad input exits 2 with one line that says what to fix, and registers nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from services.cli.common import actor, fail, fail_message, runtime
from services.core.errors import RadwatchError

app = typer.Typer(
    help="Linear probes on an embedding-only encoder: fit and register.", no_args_is_help=True
)


@app.command("fit")
def fit(
    encoder: Annotated[str, typer.Option("--encoder", help="Registered encoder name.")],
    encoder_version: Annotated[
        int, typer.Option("--encoder-version", min=1, help="Encoder version to fit on.")
    ],
    name: Annotated[str, typer.Option("--name", help="Registered name of the probe.")],
    studies: Annotated[
        Path,
        typer.Option(help="A directory of DICOM files, or a .parquet table with a 'path' column."),
    ],
    labels: Annotated[
        Path,
        typer.Option(help="CSV with study_id and one 0/1 column per finding (empty: no label)."),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Fit one logistic head per finding on the encoder's embeddings and register the probe."""
    from services.core.db import session_scope
    from services.core.progress import stage_progress
    from services.serving.probes import fit_and_register

    for path in (studies, labels):
        if not path.exists():
            fail_message(f"{path} does not exist.")
    with runtime() as rt, stage_progress(disable=as_json) as progress:
        try:
            with session_scope(rt.sessions) as session:
                summary = fit_and_register(
                    rt.triton,
                    rt.registry,
                    rt.model_repository,
                    encoder=encoder,
                    encoder_version=encoder_version,
                    name=name,
                    studies=studies,
                    labels_csv=labels,
                    session=session,
                    actor=actor(),
                    progress=lambda done, total: progress("labelled studies", done, total),
                )
        except RadwatchError as exc:
            fail(exc)
    if as_json:
        typer.echo(json.dumps(asdict(summary)))
        return
    heads = ", ".join(f"{f} ({pos}+/{neg}-)" for f, (neg, pos) in summary.labelled.items())
    typer.echo(
        f"registered {summary.name} version {summary.version} on {summary.encoder} version "
        f"{summary.encoder_version}: {summary.studies} studies ({summary.rejected} rejected), "
        f"heads {heads}; fitted in {summary.fit_seconds:.2f} s"
    )
    if summary.cleared:
        typer.echo("cleared the revalidation flag: it is fitted on the encoder's newest version")
