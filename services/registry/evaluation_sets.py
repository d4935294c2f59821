"""Sequestered evaluation sets: labelled DICOM studies that no model trains on, registered once,
hashed and versioned, on which the champion and every candidate are run through Triton for the
dossier.

A set is copied as registered (the files renamed by position, so no file name reaches MLflow),
with a manifest of every file's sha256 and the per-study overrides of a parquet source. Labels
are the CSV as given (``study_id`` and one 0/1 column per finding); which finding a dossier
judges is the change protocol's choice. Every file must be a radiograph radwatch reads: a set
with an unreadable file is refused whole, because a dossier must say exactly which cases it saw.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path

from sqlalchemy.orm import Session

from pipelines.export_triton import file_digest
from pipelines.studies import decoded, read_labels, study_files
from services.audit import actions
from services.audit import service as audit
from services.core.errors import ValidationFailedError, pipeline_errors
from services.core.ports import EvaluationSetInfo, ModelRegistry

MANIFEST = "manifest.json"
LABELS = "labels.csv"
STUDIES = "studies"
#: Fewest studies a set may hold (a dossier needs both classes and subgroups of some size).
MIN_STUDIES = 30


def register(
    registry: ModelRegistry,
    *,
    name: str,
    studies: Path,
    labels_csv: Path,
    session: Session | None = None,
    actor: str = actions.ACTOR_SYSTEM,
) -> EvaluationSetInfo:
    """Check, copy, hash and store ``studies`` with ``labels_csv`` as the next version of
    ``name``; with ``session``, audit it (the caller commits)."""
    with pipeline_errors():
        files = study_files(studies)
        labels = read_labels(labels_csv)
    bad = [i for i, dicom in decoded(files) if dicom is None]
    if bad:
        raise ValidationFailedError(
            f"{len(bad)} of {len(files)} files are not radiographs radwatch reads (the first is "
            f"number {bad[0] + 1} in sorted order); remove them: an evaluation set must be exact."
        )
    if len(files) < MIN_STUDIES:
        raise ValidationFailedError(
            f"{len(files)} studies; an evaluation set needs at least {MIN_STUDIES}."
        )
    findings = sorted({f for row in labels.values() for f in row})
    with tempfile.TemporaryDirectory(prefix="radwatch-evalset-") as tmp:
        folder = Path(tmp)
        (folder / STUDIES).mkdir()
        entries = []
        for i, (path, overrides) in enumerate(files):
            target = folder / STUDIES / f"{i:06d}.dcm"
            shutil.copyfile(path, target)
            entries.append(
                {
                    "file": f"{STUDIES}/{target.name}",
                    "sha256": file_digest(target),
                    "overrides": {k: _plain(v) for k, v in overrides.items()},
                }
            )
        shutil.copyfile(labels_csv, folder / LABELS)
        manifest = {
            "name": name,
            "studies": len(entries),
            "labelled_studies": len(labels),
            "findings": findings,
            "labels_sha256": file_digest(folder / LABELS),
            "files": entries,
        }
        text = json.dumps(manifest, sort_keys=True, separators=(",", ":"))
        (folder / MANIFEST).write_text(text)
        sha = hashlib.sha256(text.encode()).hexdigest()
        info = registry.log_evaluation_set(name, folder, sha256=sha, studies=len(entries))
    if session is not None:
        audit.record(
            session,
            actor=actor,
            action=actions.EVALUATION_SET_REGISTERED,
            entity_type=actions.EVALUATION_SET,
            entity_id=f"{name}:{info.version}",
            payload={
                "name": name,
                "version": info.version,
                "sha256": sha,
                "studies": len(entries),
                "findings": findings,
            },
        )
    return info


def _plain(value: object) -> object:
    """A parquet cell as JSON (numpy scalars to Python)."""
    item = getattr(value, "item", None)
    return item() if callable(item) else value


def load_manifest(folder: Path) -> dict[str, object]:
    """The manifest of a downloaded set, after checking every file against its sha256."""
    manifest: dict[str, object] = json.loads((folder / MANIFEST).read_text())
    for entry in manifest["files"]:  # type: ignore[attr-defined]
        if file_digest(folder / entry["file"]) != entry["sha256"]:
            raise ValidationFailedError(
                f"Evaluation set file {entry['file']} does not match its recorded sha256; the "
                "stored set was changed. Register it again."
            )
    return manifest
