"""Registering a model radwatch did not train: import, check, log with its spec, register.

The importers (:mod:`pipelines.importers`) validate the model file against its spec and write
the one file Triton will serve. Here the version is logged to MLflow with its spec, model card
and lineage (the source file's hash), registered, and recorded in the audit trail. A refused
import registers nothing; so does a spec whose interface differs from the versions already
registered under the name (every version of a name is served under one Triton config and
compared by the same monitors).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from pipelines.export_triton import file_digest
from pipelines.importers import ImportedModel, import_model
from pipelines.spec import ModelSpec
from services.audit import actions
from services.audit import service as audit
from services.core.errors import ConflictError, UnknownModelError, pipeline_errors
from services.core.ports import SERVING_SHA256_TAG, ModelRegistry


@dataclass(frozen=True)
class ImportedVersion:
    name: str
    version: int
    run_id: str
    spec: ModelSpec
    source_format: str
    source_sha256: str
    #: Probes flagged for revalidation because they read an older version of this model.
    flagged_probes: tuple[str, ...] = ()


def card_markdown(name: str, imported: ImportedModel) -> str:
    """The model card as Markdown: what the importer knew, and what radwatch did not check."""
    card = imported.card
    spec = imported.spec
    findings = ", ".join(spec.findings.names) if spec.findings else "none"
    width = spec.embedding.width if spec.embedding else "none"
    shape = list(spec.input.shape) if spec.input else "embedding (probe)"
    lines = [
        f"# Model card: {name}",
        "",
        str(card.get("description") or spec.description or "No description was supplied."),
        "",
        f"- **Source**: {imported.source_format}, sha256 `{imported.source_sha256}`",
        f"- **Input**: {shape}; modality {spec.modality}, {spec.dimensionality}-D",
        f"- **Findings**: {findings}",
        f"- **Embedding width**: {width}",
        f"- **Retraining**: {spec.retraining.kind}",
    ]
    for key in ("version", "authors", "license", "intended_use"):
        if card.get(key):
            lines.append(f"- **{key.replace('_', ' ').capitalize()}**: {card[key]}")
    lines += [
        "",
        "Imported, not trained, by radwatch: its performance is what the reference profile, the "
        "monitors and the dossier measure, not what its authors claim.",
    ]
    return "\n".join(lines) + "\n"


def _differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


def check_interface(registry: ModelRegistry, name: str, spec: ModelSpec) -> None:
    """Refuse (409) a spec whose interface differs from the newest registered version's."""
    try:
        versions = registry.list_versions(name)
    except UnknownModelError:
        return
    if not versions:
        return
    newest = versions[-1].version
    existing = registry.load_spec(name, newest)
    if existing.interface() != spec.interface():
        fields = ", ".join(_differences(existing.interface(), spec.interface()))
        raise ConflictError(
            f"Model '{name}' already exists with a different spec (version {newest} differs in: "
            f"{fields}). Import it under a new name, or give a spec with the same input and "
            "outputs."
        )


def import_version(
    registry: ModelRegistry,
    *,
    name: str,
    source: Path,
    spec: ModelSpec | None,
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> ImportedVersion:
    """Import ``source`` (``.onnx``, ``.pt2``, a MONAI Bundle directory or zip) as the next
    version of ``name``. With ``session``, a ``model.registered`` audit record by ``actor`` is
    appended (the caller commits). A model with an embedding output may have probes fitted on
    its older versions: those are flagged for revalidation (:mod:`services.registry.probes`)."""
    with tempfile.TemporaryDirectory(prefix="radwatch-import-") as tmp:
        with pipeline_errors():
            imported = import_model(source, spec, Path(tmp))
        check_interface(registry, name, imported.spec)
        run_id = registry.log_import(
            experiment=name,
            run_name=f"import-{name}",
            spec=imported.spec,
            artifact=imported.artifact,
            model_card=card_markdown(name, imported),
            params={
                "source_format": imported.source_format,
                "source_sha256": imported.source_sha256,
                "spec_sha256": imported.spec.sha256(),
            },
            tags={
                "radwatch.kind": "import",
                "radwatch.source_sha256": imported.source_sha256,
                "radwatch.spec_sha256": imported.spec.sha256(),
                SERVING_SHA256_TAG: file_digest(imported.artifact),
            },
        )
    version = registry.register(
        name, run_id, description=f"Imported from {imported.source_format} by radwatch."
    )
    if session is not None:
        audit.record(
            session,
            actor=actor,
            action=actions.MODEL_REGISTERED,
            entity_type=actions.MODEL_VERSION,
            entity_id=actions.model_version_id(name, version),
            payload={
                "model": name,
                "version": version,
                "mlflow_run_id": run_id,
                "source_format": imported.source_format,
                "source_sha256": imported.source_sha256,
                "spec_sha256": imported.spec.sha256(),
            },
        )
    flagged: list[str] = []
    if imported.spec.embedding is not None:
        # Imported here: services.registry.probes imports this module (check_interface).
        from services.registry.probes import flag_stale_probes

        flagged = flag_stale_probes(
            registry, encoder=name, version=version, session=session, actor=actor
        )
    return ImportedVersion(
        name=name,
        version=version,
        run_id=run_id,
        spec=imported.spec,
        source_format=imported.source_format,
        source_sha256=imported.source_sha256,
        flagged_probes=tuple(flagged),
    )
