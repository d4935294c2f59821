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

from collections.abc import Callable
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
    studies than the spec's ``reference.min_studies`` is a 422 and stores nothing.
    """
    spec: ModelSpec = registry.load_spec(name, version)
    if spec.input is None:
        raise ValidationFailedError(
            f"'{name}' version {version} is a probe; build the reference of its encoder."
        )
    findings = spec.findings.names if spec.findings else ()
    with pipeline_errors():
        files = study_files(source)
        known = read_labels(labels_csv, findings) if labels_csv is not None else {}
    if not files:
        raise ValidationFailedError(f"{source} holds no files; give DICOM reference studies.")
    make_ready(triton, registry, repository_dir, name, version)

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
    if len(rows) < spec.reference.min_studies:
        raise ValidationFailedError(
            f"{len(rows)} usable reference studies ({rejected} rejected); the spec asks for at "
            f"least {spec.reference.min_studies} (reference.min_studies)."
        )
    metadata = pd.DataFrame(rows, columns=list(METADATA_COLUMNS))
    label_array = np.array(labels, dtype=np.int8).reshape(len(rows), len(findings))
    profile = ReferenceProfile(
        embeddings=np.concatenate(embeddings),
        scores=np.concatenate(scores),
        labels=label_array,
        metadata=metadata,
        findings=findings,
    )
    registry.log_reference_profile(name, version, profile)
    return ReferenceSummary(
        name=name,
        version=version,
        studies=len(rows),
        rejected=rejected,
        labelled=int((label_array != NO_LABEL).any(axis=1).sum()),
        sites={str(k): int(v) for k, v in metadata["site"].value_counts().sort_index().items()},
    )
