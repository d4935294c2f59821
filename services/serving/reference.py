"""Reference profiles for models radwatch did not train: run the user's reference studies
through Triton and store what the monitors compare production against.

A model trained by radwatch gets its reference profile from its validation set at training
time. An imported model has none, so the MLOps engineer supplies reference studies (DICOM
files in a directory, or a parquet table listing them) that look like what the model should see
in production, optionally with labels. Every study goes through the same path as a production
prediction: DICOM decoding, the spec's preprocessing, the version on Triton. The profile keeps
the outputs, embeddings, acquisition metadata and image statistics, row-aligned, and is stored
with the version in the registry. Identifiers are never stored: only the labels are joined on
the study id (AccessionNumber) and then dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipelines.acquisition import CATEGORICAL_METADATA, NUMERIC_METADATA
from pipelines.dicom import DicomImage, pixel_options, site_slug
from pipelines.preprocess import image_stats, prepare
from pipelines.profile import METADATA_COLUMNS, ReferenceProfile
from pipelines.retrain import NO_LABEL
from pipelines.spec import ModelSpec
from pipelines.studies import decoded, read_labels, study_files
from services.core.errors import ValidationFailedError, pipeline_errors
from services.core.ports import InferenceServer, ModelRegistry
from services.serving.service import make_ready

#: Studies sent to Triton per request while building.
BATCH = 16


@dataclass(frozen=True)
class ReferenceSummary:
    name: str
    version: int
    studies: int
    rejected: int
    labelled: int
    sites: dict[str, int]


def _metadata_row(dicom: DicomImage) -> dict[str, Any]:
    meta = dicom.metadata
    site = meta.get("site") or site_slug(str(meta.get("institution_name") or "unknown"))
    row: dict[str, Any] = {"site": str(site)}
    for c in CATEGORICAL_METADATA:
        row[c] = meta.get(c)
    for c in NUMERIC_METADATA:
        value = meta.get(c)
        row[c] = float(value) if isinstance(value, int | float) else np.nan
    row.update({f"img_{k}": v for k, v in image_stats(dicom.image).items()})
    return row


@dataclass(frozen=True)
class StudyRun:
    """What a version returned for a study source, row-aligned over the usable studies:
    ``metadata`` has :data:`METADATA_COLUMNS`, ``labels`` int8 ``[N, F]`` (``NO_LABEL`` where
    the labels file has none), and ``rejected`` counts the files that were not radiographs."""

    embeddings: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    metadata: pd.DataFrame
    rejected: int

    def __len__(self) -> int:
        return len(self.metadata)

    def sites(self) -> dict[str, int]:
        counts = self.metadata["site"].value_counts().sort_index()
        return {str(k): int(v) for k, v in counts.items()}


def run_studies(
    triton: InferenceServer,
    *,
    name: str,
    version: int,
    spec: ModelSpec,
    files: Sequence[tuple[Path, dict[str, Any]]],
    known: Mapping[str, Mapping[str, int]],
    findings: Sequence[str],
    progress: Callable[[int, int], None] | None = None,
) -> StudyRun:
    """Run ``files`` through ``name`` ``version`` on Triton (already ready) the way a
    production prediction goes: DICOM decoding, ``spec``'s preprocessing, Triton. Labels are
    joined from ``known`` (study id to finding to 0/1) for ``findings`` and the ids dropped."""
    rows: list[dict[str, Any]] = []
    scores: list[npt.NDArray[np.float32]] = []
    embeddings: list[npt.NDArray[np.float32]] = []
    labels: list[list[int]] = []
    rejected = 0
    batch: list[DicomImage] = []

    def flush() -> None:
        if not batch:
            return
        out = triton.infer(name, version, prepare(spec, [d.image for d in batch]), spec=spec)
        scores.append(out.probs)
        embeddings.append(out.embeddings)
        for d in batch:
            rows.append(_metadata_row(d))
            given = known.get(str(d.metadata.get("study_id") or ""), {})
            labels.append([given.get(f, NO_LABEL) for f in findings])
        batch.clear()

    for i, dicom in decoded(files, pixel_options(spec.preprocessing)):
        if dicom is None:
            rejected += 1
        else:
            batch.append(dicom)
            if len(batch) == BATCH:
                flush()
        if progress is not None:
            progress(i + 1, len(files))
    flush()
    width = spec.embedding.width if spec.embedding is not None else 0
    outputs = len(spec.findings.names) if spec.findings is not None else 0
    return StudyRun(
        embeddings=np.concatenate(embeddings) if embeddings else np.zeros((0, width), np.float32),
        scores=np.concatenate(scores) if scores else np.zeros((0, outputs), np.float32),
        labels=np.array(labels, dtype=np.int8).reshape(len(rows), len(findings)),
        metadata=pd.DataFrame(rows, columns=list(METADATA_COLUMNS)),
        rejected=rejected,
    )


def build_reference(
    triton: InferenceServer,
    registry: ModelRegistry,
    repository_dir: Path,
    *,
    name: str,
    version: int,
    source: Path,
    labels_csv: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ReferenceSummary:
    """Build and store the reference profile of ``name`` ``version`` from ``source``.

    Files that are not readable radiographs are counted as rejected and skipped; fewer usable
    studies than the spec's ``reference.min_studies`` is a 422 and stores nothing. A probe's
    reference is built when it is fitted (``radwatch probes fit``), from its labelled studies.
    """
    spec: ModelSpec = registry.load_spec(name, version)
    if spec.runtime == "probe":
        raise ValidationFailedError(
            f"'{name}' version {version} is a probe; its reference profile was stored when it "
            "was fitted. Fit a new version with `radwatch probes fit` to change it."
        )
    findings = spec.findings.names if spec.findings else ()
    with pipeline_errors():
        files = study_files(source)
        known = read_labels(labels_csv, findings) if labels_csv is not None else {}
    if not files:
        raise ValidationFailedError(f"{source} holds no files; give DICOM reference studies.")
    make_ready(triton, registry, repository_dir, name, version)
    run = run_studies(
        triton,
        name=name,
        version=version,
        spec=spec,
        files=files,
        known=known,
        findings=findings,
        progress=progress,
    )
    require_studies(run, spec)
    profile = ReferenceProfile(
        embeddings=run.embeddings,
        scores=run.scores,
        labels=run.labels,
        metadata=run.metadata,
        findings=findings,
    )
    registry.log_reference_profile(name, version, profile)
    return ReferenceSummary(
        name=name,
        version=version,
        studies=len(run),
        rejected=run.rejected,
        labelled=int((run.labels != NO_LABEL).any(axis=1).sum()),
        sites=run.sites(),
    )


def require_studies(run: StudyRun, spec: ModelSpec) -> None:
    """Refuse (422) fewer usable studies than the spec's ``reference.min_studies``."""
    if len(run) < spec.reference.min_studies:
        raise ValidationFailedError(
            f"{len(run)} usable reference studies ({run.rejected} rejected); the spec asks for "
            f"at least {spec.reference.min_studies} (reference.min_studies)."
        )
