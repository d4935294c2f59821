"""Probes in the registry: registering a fitted probe, and flagging probes whose encoder moved on.

A probe (:mod:`pipelines.probes`) is registered like an imported model: a run with its spec, its
one serving file (``probe.npz``, the heads), a model card and lineage, then a version of its
name, an audit record and a reference profile. Fitting it (running studies through the encoder
on Triton) is :func:`services.serving.probes.fit_and_register`, one layer up, because it needs
the encoder served.

A probe's heads only mean something on the exact encoder version they were fitted on. When a
new version of that encoder is imported, each probe whose newest version reads an older one is
flagged with the registered-model tag :data:`REVALIDATION_TAG` (a one-line reason) and an audit
record: it keeps serving its pinned encoder version, but someone must refit it on the new
encoder and revalidate before moving it. Registering a probe version fitted on the encoder's
newest version clears the flag.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from sqlalchemy.orm import Session

from pipelines import probes
from pipelines.export_triton import file_digest
from pipelines.spec import ModelSpec
from services.audit import actions
from services.audit import service as audit
from services.core.errors import UnknownModelError
from services.core.ports import SERVING_SHA256_TAG, ModelRegistry
from services.registry.imports import check_interface

if TYPE_CHECKING:
    from pipelines.profile import ReferenceProfile

#: Registered-model tag of a probe that must be refitted on its encoder's newest version.
REVALIDATION_TAG: Final = "radwatch.needs_revalidation"
#: Run tag ``radwatch.kind`` of a probe's run (imports are ``import``).
PROBE_KIND: Final = "probe"
#: The probe's serving file name inside ``serving/``.
PROBE_ARTIFACT: Final = "probe.npz"


@dataclass(frozen=True)
class RegisteredProbe:
    name: str
    version: int
    run_id: str
    spec: ModelSpec
    cleared: str | None


def card_markdown(name: str, spec: ModelSpec, counts: Mapping[str, tuple[int, int]]) -> str:
    """The model card: which encoder the heads read and how many labelled studies each saw."""
    assert spec.encoder is not None
    lines = [
        f"# Model card: {name}",
        "",
        spec.description,
        "",
        f"- **Encoder**: {spec.encoder.name} version {spec.encoder.version} "
        f"({spec.encoder_runtime}, serving sha256 `{spec.encoder.sha256}`)",
        f"- **Embedding width**: {spec.embedding.width if spec.embedding else '-'}",
        "- **Heads**: one L2-penalised logistic regression per finding (pipelines.probes)",
        "",
        "| finding | labelled positives | labelled negatives |",
        "|---|---|---|",
        *(f"| {f} | {pos} | {neg} |" for f, (neg, pos) in counts.items()),
        "",
        "Fitted by radwatch on the labelled studies given to `radwatch probes fit`; its scores "
        "on those studies are its reference profile, so they are in-sample.",
    ]
    return "\n".join(lines) + "\n"


def needs_revalidation(registry: ModelRegistry, name: str) -> str | None:
    """The reason ``name`` must be refitted and revalidated, or None."""
    return registry.model_tags(name).get(REVALIDATION_TAG) or None


def register_probe(
    registry: ModelRegistry,
    *,
    name: str,
    probe: probes.Probe,
    spec: ModelSpec,
    profile: ReferenceProfile,
    params: Mapping[str, object],
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> RegisteredProbe:
    """Log ``probe`` as the next version of ``name`` with its spec, card and reference profile,
    register it, and (with ``session``) append ``model.registered`` by ``actor`` (the caller
    commits). A version fitted on its encoder's newest version clears :data:`REVALIDATION_TAG`.
    Refuses (409) a spec whose interface differs from the name's existing versions."""
    assert spec.encoder is not None, "register_probe takes a probe's spec (probes.probe_spec)"
    check_interface(registry, name, spec)
    counts = {
        f: (int((profile.labels[:, j] == 0).sum()), int((profile.labels[:, j] == 1).sum()))
        for j, f in enumerate(probe.findings)
    }
    with tempfile.TemporaryDirectory(prefix="radwatch-probe-") as tmp:
        artifact = probes.save(probe, Path(tmp) / PROBE_ARTIFACT)
        artifact_sha = file_digest(artifact)
        run_id = registry.log_import(
            experiment=name,
            run_name=f"probe-{name}",
            spec=spec,
            artifact=artifact,
            model_card=card_markdown(name, spec, counts),
            params={
                **params,
                "encoder": f"{spec.encoder.name}:{spec.encoder.version}",
                "encoder_sha256": spec.encoder.sha256,
                "spec_sha256": spec.sha256(),
            },
            tags={
                "radwatch.kind": PROBE_KIND,
                SERVING_SHA256_TAG: artifact_sha,
                "radwatch.spec_sha256": spec.sha256(),
                "radwatch.encoder": f"{spec.encoder.name}:{spec.encoder.version}",
            },
        )
    version = registry.register(
        name,
        run_id,
        description=f"Probe on {spec.encoder.name} version {spec.encoder.version}.",
    )
    registry.log_reference_profile(name, version, profile)
    cleared = _clear_if_current(registry, name, version, spec, session=session, actor=actor)
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
                "source_format": PROBE_KIND,
                "source_sha256": artifact_sha,
                "spec_sha256": spec.sha256(),
                "encoder": spec.encoder.name,
                "encoder_version": spec.encoder.version,
            },
        )
    return RegisteredProbe(name=name, version=version, run_id=run_id, spec=spec, cleared=cleared)


def _newest(registry: ModelRegistry, name: str) -> int | None:
    try:
        versions = registry.list_versions(name)
    except UnknownModelError:
        return None
    return versions[-1].version if versions else None


def _clear_if_current(
    registry: ModelRegistry,
    name: str,
    version: int,
    spec: ModelSpec,
    *,
    session: Session | None,
    actor: str,
) -> str | None:
    assert spec.encoder is not None
    reason = needs_revalidation(registry, name)
    newest = _newest(registry, spec.encoder.name)
    if reason is None or newest is None or spec.encoder.version < newest:
        return None
    registry.delete_model_tag(name, REVALIDATION_TAG)
    if session is not None:
        audit.record(
            session,
            actor=actor,
            action=actions.MODEL_REVALIDATION_CLEARED,
            entity_type=actions.MODEL_VERSION,
            entity_id=actions.model_version_id(name, version),
            payload={
                "model": name,
                "version": version,
                "encoder": spec.encoder.name,
                "encoder_version": spec.encoder.version,
            },
        )
    return reason


def flag_stale_probes(
    registry: ModelRegistry,
    *,
    encoder: str,
    version: int,
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> list[str]:
    """Flag every probe whose newest version reads ``encoder`` at a version below ``version``
    (just registered); returns their names. Only runs tagged as probes are read, so the cost is
    one run lookup per registered model plus one spec per probe."""
    flagged = []
    for name in registry.model_names():
        if name == encoder or (newest := _newest(registry, name)) is None:
            continue
        info = registry.get_version(name, newest)
        if registry.run_tags(info.run_id).get("radwatch.kind") != PROBE_KIND:
            continue
        ref = registry.load_spec(name, newest).encoder
        if ref is None or ref.name != encoder or ref.version >= version:
            continue
        reason = (
            f"encoder {encoder} has version {version}, but {name} version {newest} was fitted "
            f"on version {ref.version}: refit it with `radwatch probes fit --encoder {encoder} "
            f"--encoder-version {version} --name {name}` and revalidate before promoting"
        )
        registry.set_model_tag(name, REVALIDATION_TAG, reason)
        flagged.append(name)
        if session is not None:
            audit.record(
                session,
                actor=actor,
                action=actions.MODEL_REVALIDATION_FLAGGED,
                entity_type=actions.MODEL_VERSION,
                entity_id=actions.model_version_id(name, newest),
                payload={
                    "model": name,
                    "version": newest,
                    "encoder": encoder,
                    "fitted_on_encoder_version": ref.version,
                    "new_encoder_version": version,
                },
            )
    return flagged
