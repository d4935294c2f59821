"""``radwatch models``: bring your own model (import), and see what is registered (list, show).

``import`` takes an ``.onnx`` file or a ``torch.export`` ``.pt2`` file with ``--spec`` (JSON or
YAML, see docs/models.md), or a MONAI Bundle directory or zip, whose spec is derived from its
``configs/metadata.json`` and ``configs/inference.json`` (``--spec`` overrides it). A refused
import registers nothing and exits 2 with one line that says what to fix.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from services.cli.common import actor, fail, fail_message, runtime
from services.core.errors import RadwatchError

if TYPE_CHECKING:
    from pipelines.spec import ModelSpec
    from services.core.ports import ModelVersionInfo

app = typer.Typer(help="Import models radwatch did not train, and list them.", no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _spec_summary(spec: ModelSpec) -> str:
    shape = "x".join(map(str, spec.input.shape)) if spec.input else "embedding"
    findings = ",".join(spec.findings.names) if spec.findings else "-"
    width = spec.embedding.width if spec.embedding else "-"
    return f"{spec.runtime} input {shape} findings {findings} embedding {width}"


def _version_json(info: ModelVersionInfo, spec: ModelSpec) -> dict[str, Any]:
    return {
        "name": info.name,
        "version": info.version,
        "aliases": list(info.aliases),
        "created_at": info.created_at.isoformat(),
        "run_id": info.run_id,
        "description": info.description,
        "spec": spec.model_dump(mode="json"),
        "spec_sha256": spec.sha256(),
    }


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(help="An .onnx file, a .pt2 file, or a MONAI Bundle directory or .zip."),
    ],
    name: Annotated[str, typer.Option("--name", help="Registered model name.")],
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="Model spec (JSON/YAML); required for .onnx and .pt2."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Validate a model against its spec and register it in MLflow as a new version."""
    from pipelines.spec import SpecError, load_spec_file
    from services.core.db import session_scope
    from services.registry.imports import import_version

    if not source.exists():
        fail_message(f"{source} does not exist; give the path of the model file or bundle.")
    try:
        spec = load_spec_file(spec_file) if spec_file is not None else None
    except SpecError as exc:
        fail_message(f"{spec_file}: {exc}")
    with runtime() as rt:
        try:
            with session_scope(rt.sessions) as session:
                done = import_version(
                    rt.registry, name=name, source=source, spec=spec, session=session, actor=actor()
                )
        except RadwatchError as exc:
            fail(exc)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "name": done.name,
                    "version": done.version,
                    "spec": done.spec.model_dump(mode="json"),
                    "flagged_probes": list(done.flagged_probes),
                }
            )
        )
    else:
        typer.echo(
            f"registered {done.name} version {done.version} from {done.source_format} "
            f"(sha256 {done.source_sha256[:12]}…): {_spec_summary(done.spec)}"
        )
        for probe in done.flagged_probes:
            typer.echo(f"flagged probe {probe} for revalidation: it reads an older version")


@app.command("list")
def list_(as_json: JsonOpt = False) -> None:
    """Every registered model with its newest version and the aliases set on it."""
    from services.registry.probes import needs_revalidation

    with runtime() as rt:
        try:
            rows = []
            for name in rt.registry.model_names():
                versions = rt.registry.list_versions(name)
                if not versions:
                    continue
                newest = versions[-1]
                spec = rt.registry.load_spec(name, newest.version)
                aliases = {a: v.version for v in versions for a in v.aliases}
                stale = needs_revalidation(rt.registry, name)
                rows.append((name, len(versions), newest, spec, aliases, stale))
        except RadwatchError as exc:
            fail(exc)
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": name,
                        "versions": count,
                        "newest": newest.version,
                        "aliases": aliases,
                        "spec_sha256": spec.sha256(),
                        "runtime": spec.runtime,
                        "needs_revalidation": stale,
                    }
                    for name, count, newest, spec, aliases, stale in rows
                ]
            )
        )
        return
    if not rows:
        typer.echo("no registered models; import one with `radwatch models import`")
    for name, count, newest, spec, aliases, stale in rows:
        alias_text = ", ".join(f"{a}=v{v}" for a, v in sorted(aliases.items())) or "no aliases"
        typer.echo(
            f"{name}: {count} version(s), newest v{newest.version} ({alias_text}); "
            f"{_spec_summary(spec)}"
        )
        if stale:
            typer.echo(f"  needs revalidation: {stale}")


@app.command("show")
def show(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[int | None, typer.Option(min=1, help="Default: the newest.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """One version with its spec."""
    from services.registry.probes import needs_revalidation

    with runtime() as rt:
        try:
            if version is None:
                versions = rt.registry.list_versions(name)
                if not versions:
                    fail_message(
                        f"'{name}' has no versions; import one with `radwatch models import`"
                    )
                version = versions[-1].version
            v = version
            info = rt.registry.get_version(name, v)
            spec = rt.registry.load_spec(name, v)
            stale = needs_revalidation(rt.registry, name)
        except RadwatchError as exc:
            fail(exc)
    out = _version_json(info, spec) | {"needs_revalidation": stale}
    if as_json:
        typer.echo(json.dumps(out))
        return
    typer.echo(f"{name} version {v}  aliases: {', '.join(info.aliases) or '-'}")
    typer.echo(f"  {_spec_summary(spec)}; retraining {spec.retraining.kind}")
    typer.echo(f"  monitors: {', '.join(spec.enabled_monitors())}")
    if spec.encoder is not None:
        typer.echo(f"  encoder: {spec.encoder.name} version {spec.encoder.version}")
    if stale:
        typer.echo(f"  needs revalidation: {stale}")
    typer.echo(f"  spec sha256 {out['spec_sha256']}; run {info.run_id}")
    typer.echo(json.dumps(out["spec"], indent=2))


reference_app = typer.Typer(
    help="Reference profiles: what 'normal' looks like for a model version.", no_args_is_help=True
)


@reference_app.command("build")
def reference_build(
    name: Annotated[str, typer.Option("--name", help="Registered model name.")],
    version: Annotated[int, typer.Option("--version", min=1, help="Registered version.")],
    studies: Annotated[
        Path,
        typer.Option(help="A directory of DICOM files, or a .parquet table with a 'path' column."),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(help="CSV with study_id and one 0/1 column per finding (optional)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Run the version on Triton over reference studies and store its reference profile."""
    from services.core.progress import stage_progress
    from services.serving.reference import build_reference

    for path in (studies, labels):
        if path is not None and not path.exists():
            fail_message(f"{path} does not exist.")
    with runtime() as rt, stage_progress() as progress:
        try:
            summary = build_reference(
                rt.triton,
                rt.registry,
                rt.model_repository,
                name=name,
                version=version,
                source=studies,
                labels_csv=labels,
                progress=lambda done, total: progress("reference studies", done, total),
            )
        except RadwatchError as exc:
            fail(exc)
    if as_json:
        typer.echo(json.dumps(summary.__dict__))
        return
    sites = ", ".join(f"{s}={n}" for s, n in summary.sites.items())
    typer.echo(
        f"reference profile of {name} version {version}: {summary.studies} studies "
        f"({summary.rejected} rejected, {summary.labelled} labelled); sites {sites}"
    )
