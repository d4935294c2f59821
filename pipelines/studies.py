"""Studies a user hands radwatch as files: DICOM radiographs listed by a folder or a parquet
table, and their labels in a CSV. Reference builds, probe fits and evaluation sets read them the
same way.

A parquet table has a ``path`` column (relative to the table's folder) and may carry columns of
:data:`OVERRIDES` that replace the DICOM tags of their row, as the fields a client sends with a
prediction do (``site`` is the usual one: the site key radwatch groups by). Labels are joined on
the study id (the AccessionNumber), which never leaves this module in a message.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipelines.acquisition import CATEGORICAL_METADATA, NUMERIC_METADATA
from pipelines.dicom import DicomImage, PixelOptions, read_dicom
from pipelines.errors import PipelineError

#: Columns of a parquet source that override the DICOM tags of their row.
OVERRIDES = ("site", *CATEGORICAL_METADATA, *NUMERIC_METADATA)

StudyFile = tuple[Path, dict[str, Any]]


class StudiesError(PipelineError):
    """A studies folder, table or labels file radwatch cannot read; the message says why."""


def study_files(source: Path) -> list[StudyFile]:
    """The DICOM files a source names, each with the values that override its tags: every file
    under a directory (sorted, hidden files skipped; no overrides), or the ``path`` column of a
    parquet table with any of :data:`OVERRIDES` as columns."""
    if source.is_dir():
        return [
            (p, {})
            for p in sorted(source.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(source).parts)
        ]
    if source.suffix == ".parquet":
        table = pd.read_parquet(source)
        if "path" not in table.columns:
            raise StudiesError(
                f"{source.name} has no 'path' column; list one DICOM file per row under 'path'."
            )
        extra = [c for c in OVERRIDES if c in table.columns]
        return [
            (
                (source.parent / str(row["path"])).resolve(),
                {c: row[c] for c in extra if not pd.isna(row[c])},
            )
            for row in table.to_dict("records")
        ]
    raise StudiesError(
        f"{source} is neither a directory of DICOM files nor a .parquet table of their paths."
    )


def read_labels(path: Path, findings: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """``study_id`` → finding → 0/1 from a CSV with a ``study_id`` column and one column per
    finding (empty cells: no label). With ``findings``, other columns are refused."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = list(reader.fieldnames or ())
        if "study_id" not in columns:
            wanted = ",".join(findings) if findings else "<finding>,..."
            raise StudiesError(
                f"{path.name} has no 'study_id' column; give one row per study with columns "
                f"study_id,{wanted}."
            )
        names = [c for c in columns if c != "study_id"]
        if findings is not None:
            unknown = set(names) - set(findings)
            if unknown:
                raise StudiesError(
                    f"{path.name} has columns {sorted(unknown)} that are not findings of this "
                    f"model ({', '.join(findings)})."
                )
            names = list(findings)
        out: dict[str, dict[str, int]] = {}
        for line, row in enumerate(reader, start=2):
            labels: dict[str, int] = {}
            for f in names:
                cell = (row.get(f) or "").strip()
                if cell == "":
                    continue
                if cell not in ("0", "1"):
                    raise StudiesError(
                        f"{path.name} line {line}: '{f}' is {cell!r}; labels are 0, 1 or empty."
                    )
                labels[f] = int(cell)
            out[str(row["study_id"]).strip()] = labels
        return out


def label_findings(path: Path) -> tuple[str, ...]:
    """The finding columns of a labels CSV (every column but ``study_id``, in file order): what
    a probe fitted on it predicts."""
    with path.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    findings = tuple(c for c in header if c != "study_id")
    if "study_id" not in header or not findings:
        raise StudiesError(
            f"{path.name} needs a 'study_id' column and one 0/1 column per finding (e.g. "
            "study_id,effusion,nodule)."
        )
    return findings


def decoded(
    files: Sequence[StudyFile], options: PixelOptions | None = None
) -> Iterator[tuple[int, DicomImage | None]]:
    """Each file decoded (with a spec's ``options``; its overrides applied to the metadata), or
    None when it is not a radiograph radwatch reads (counted as rejected by the caller)."""
    for i, (path, overrides) in enumerate(files):
        try:
            dicom = read_dicom(path.read_bytes(), options)
        except (OSError, PipelineError):
            yield i, None
            continue
        dicom.metadata.update(overrides)
        yield i, dicom
