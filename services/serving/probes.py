"""Fit linear probes on an encoder served by Triton, and register them with their reference.

The labelled studies go through the same path as production predictions (DICOM decoding, the
encoder's preprocessing, the encoder version on Triton; :func:`services.serving.reference.
run_studies`), so the heads are fitted on exactly the embeddings the gateway will hand them.
The probe is then registered as a version of its own name (:func:`services.registry.probes.
register_probe`) with a reference profile from the same studies: embeddings, the probe's
scores, the labels and acquisition metadata, which is what its drift, performance and fairness
monitors compare production against.

This lives in serving, not registry, because it needs the encoder served (``make_ready``) and
serving sits above the registry in the layers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from pipelines.probes import MIN_PER_CLASS, apply, fit_probes, probe_spec
from pipelines.profile import ReferenceProfile
from pipelines.spec import EncoderRef, ModelSpec
from pipelines.studies import label_findings, read_labels, study_files
from services.audit import actions
from services.core.errors import ValidationFailedError, pipeline_errors
from services.core.ports import InferenceServer, ModelRegistry
from services.registry.imports import check_interface
from services.registry.probes import register_probe
from services.serving.reference import require_studies, run_studies
from services.serving.service import make_ready

#: Penalty of the heads (see :func:`pipelines.probes.fit_probes`); recorded with each version.
L2 = 1e-3


@dataclass(frozen=True)
class ProbeSummary:
    name: str
    version: int
    encoder: str
    encoder_version: int
    findings: tuple[str, ...]
    studies: int
    rejected: int
    #: Finding to (labelled negatives, labelled positives).
    labelled: dict[str, tuple[int, int]]
    sites: dict[str, int]
    fit_seconds: float
    #: The revalidation reason this version cleared, if any.
    cleared: str | None = None


def _encoder_spec(registry: ModelRegistry, encoder: str, version: int) -> ModelSpec:
    spec = registry.load_spec(encoder, version)
    if spec.runtime == "probe" or spec.embedding is None:
        raise ValidationFailedError(
            f"'{encoder}' version {version} has no embedding output for probes to read "
            f"(runtime {spec.runtime}); import an encoder whose spec declares an 'embedding' "
            "output."
        )
    return spec


def fit_and_register(
    triton: InferenceServer,
    registry: ModelRegistry,
    repository_dir: Path,
    *,
    encoder: str,
    encoder_version: int,
    name: str,
    studies: Path,
    labels_csv: Path,
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
    progress: Callable[[int, int], None] | None = None,
) -> ProbeSummary:
    """Fit one head per finding of ``labels_csv`` (a ``study_id`` column and one 0/1 column per
    finding) on the embeddings ``encoder`` ``encoder_version`` gives the DICOM ``studies`` (a
    folder, or a parquet table with a ``path`` column, as ``radwatch reference build`` reads),
    and register the probe as the next version of ``name``. With ``session``, audit records are
    appended (the caller commits).

    Refuses (422) before registering anything: an encoder without an embedding, fewer usable
    studies than the encoder spec's ``reference.min_studies``, a finding with fewer than
    :data:`~pipelines.probes.MIN_PER_CLASS` labelled positives or negatives among them.
    """
    if name == encoder:
        raise ValidationFailedError(
            f"the probe needs a name of its own; '{encoder}' is the encoder's name"
        )
    encoder_spec = _encoder_spec(registry, encoder, encoder_version)
    with pipeline_errors():
        findings = label_findings(labels_csv)
        known = read_labels(labels_csv, findings)
    ref = EncoderRef(
        name=encoder,
        version=encoder_version,
        sha256=registry.serving_sha256(encoder, encoder_version),
    )
    with pipeline_errors():
        spec = probe_spec(encoder_spec, ref, findings)
    check_interface(registry, name, spec)  # before the studies run, not after
    with pipeline_errors():
        files = study_files(studies)
    if not files:
        raise ValidationFailedError(f"{studies} holds no files; give labelled DICOM studies.")
    make_ready(triton, registry, repository_dir, encoder, encoder_version)
    run = run_studies(
        triton,
        name=encoder,
        version=encoder_version,
        spec=encoder_spec.encoder_view(),
        files=files,
        known=known,
        findings=findings,
        progress=progress,
    )
    require_studies(run, spec)
    start = time.perf_counter()
    with pipeline_errors():
        probe = fit_probes(run.embeddings, run.labels, findings, encoder=ref, l2=L2)
    fit_seconds = time.perf_counter() - start
    profile = ReferenceProfile(
        embeddings=run.embeddings,
        scores=apply(probe, run.embeddings),
        labels=run.labels,
        metadata=run.metadata,
        findings=findings,
    )
    registered = register_probe(
        registry,
        name=name,
        probe=probe,
        spec=spec,
        profile=profile,
        params={
            "l2": L2,
            "min_per_class": MIN_PER_CLASS,
            "studies": len(run),
            "rejected": run.rejected,
            "fit_seconds": round(fit_seconds, 4),
        },
        session=session,
        actor=actor,
    )
    labelled = {
        f: (int((run.labels[:, j] == 0).sum()), int((run.labels[:, j] == 1).sum()))
        for j, f in enumerate(findings)
    }
    return ProbeSummary(
        name=name,
        version=registered.version,
        encoder=encoder,
        encoder_version=encoder_version,
        findings=findings,
        studies=len(run),
        rejected=run.rejected,
        labelled=labelled,
        sites=run.sites(),
        fit_seconds=fit_seconds,
        cleared=registered.cleared,
    )
