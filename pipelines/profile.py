"""The reference profile: what "normal" looked like for a model version at registration time.

Drift, performance and fairness monitors compare a window of production predictions against
this profile, so it keeps everything they need, row-aligned: encoder embeddings, output
probabilities, ground-truth labels, acquisition metadata and raw-image statistics of the
validation set. It is stored with the model in MLflow as plain files (``.npy`` arrays, a
parquet table and a JSON manifest) that any tool can read.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipelines.acquisition import CATEGORICAL_METADATA, IMAGE_STATS, NUMERIC_METADATA
from pipelines.contract import EMBEDDING_DIM, FINDINGS, TRITON_MAX_BATCH
from pipelines.model import RadiographNet, predict
from pipelines.preprocess import image_stats, to_model_input
from pipelines.synth import Study

#: Columns of :attr:`ReferenceProfile.metadata`, in order.
METADATA_COLUMNS: tuple[str, ...] = (
    "site",
    *CATEGORICAL_METADATA,
    *NUMERIC_METADATA,
    *(f"img_{k}" for k in IMAGE_STATS),
)
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_ARRAYS = ("embeddings", "scores", "labels")
_METADATA_FILE = "metadata.parquet"


@dataclass
class ReferenceProfile:
    """Row-aligned reference data; row ``i`` of every field describes the same study.

    ``embeddings`` float32 [N, D], ``scores`` float32 [N, F] probabilities, ``labels`` int8
    [N, F] (0/1), ``metadata`` with :data:`METADATA_COLUMNS`. ``findings`` names the F columns.
    """

    embeddings: npt.NDArray[np.float32]
    scores: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]
    metadata: pd.DataFrame
    findings: tuple[str, ...] = field(default=FINDINGS)

    def __post_init__(self) -> None:
        self.embeddings = np.asarray(self.embeddings, dtype=np.float32)
        self.scores = np.asarray(self.scores, dtype=np.float32)
        self.labels = np.asarray(self.labels, dtype=np.int8)
        self.findings = tuple(self.findings)
        n = len(self.metadata)
        problems = []
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            problems.append(f"embeddings shape {self.embeddings.shape} != ({n}, D)")
        for name in ("scores", "labels"):
            arr = getattr(self, name)
            if arr.shape != (n, len(self.findings)):
                problems.append(f"{name} shape {arr.shape} != ({n}, {len(self.findings)})")
        missing = [c for c in METADATA_COLUMNS if c not in self.metadata.columns]
        if missing:
            problems.append(f"metadata lacks columns {missing}")
        if problems:
            raise ValueError(
                "inconsistent ReferenceProfile: " + "; ".join(problems) + ". Rebuild it with "
                "pipelines.profile.build_profile so all parts come from the same studies"
            )

    def __len__(self) -> int:
        return len(self.metadata)

    @property
    def embedding_dim(self) -> int:
        return int(self.embeddings.shape[1])

    def for_site(self, site: str) -> ReferenceProfile:
        """The rows of one site (monitors run per site). Raises ``ValueError`` if none."""
        mask = (self.metadata["site"] == site).to_numpy()
        if not mask.any():
            known = sorted(self.metadata["site"].astype(str).unique())
            raise ValueError(f"the reference profile has no rows for site {site!r}; has {known}")
        return ReferenceProfile(
            embeddings=self.embeddings[mask],
            scores=self.scores[mask],
            labels=self.labels[mask],
            metadata=self.metadata.loc[mask].reset_index(drop=True),
            findings=self.findings,
        )

    def save(self, directory: Path) -> None:
        """Write ``embeddings.npy``, ``scores.npy``, ``labels.npy``, ``metadata.parquet`` and
        ``manifest.json`` into ``directory`` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        for name in _ARRAYS:
            np.save(directory / f"{name}.npy", getattr(self, name), allow_pickle=False)
        self.metadata.to_parquet(directory / _METADATA_FILE, index=False)
        manifest = {
            "format_version": FORMAT_VERSION,
            "n": len(self),
            "findings": list(self.findings),
            "embedding_dim": self.embedding_dim,
            "metadata_columns": list(self.metadata.columns),
        }
        (directory / _MANIFEST).write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(cls, directory: Path) -> ReferenceProfile:
        """Read a profile written by :meth:`save`, checking every file against the manifest.

        Raises ``FileNotFoundError`` for a missing file and ``ValueError`` naming the file whose
        shape or content disagrees with ``manifest.json``.
        """
        directory = Path(directory)
        manifest_path = directory / _MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{manifest_path} not found; pass a directory written by ReferenceProfile.save"
            )
        manifest = json.loads(manifest_path.read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{manifest_path}: format_version {manifest.get('format_version')} is not "
                f"{FORMAT_VERSION}; rebuild the profile with this radwatch version"
            )
        n, dim = int(manifest["n"]), int(manifest["embedding_dim"])
        findings = tuple(manifest["findings"])
        expected = {
            "embeddings": (n, dim),
            "scores": (n, len(findings)),
            "labels": (n, len(findings)),
        }
        arrays: dict[str, npt.NDArray[Any]] = {}
        for name, shape in expected.items():
            path = directory / f"{name}.npy"
            arr = np.load(path, allow_pickle=False)
            if arr.shape != shape:
                raise ValueError(
                    f"{path} has shape {arr.shape} but {_MANIFEST} says {shape} "
                    f"(n={n}, embedding_dim={dim}, {len(findings)} findings); the profile "
                    "files come from different builds: rebuild and save it again"
                )
            arrays[name] = arr
        metadata = pd.read_parquet(directory / _METADATA_FILE)
        if len(metadata) != n:
            raise ValueError(
                f"{directory / _METADATA_FILE} has {len(metadata)} rows but {_MANIFEST} says {n}"
            )
        return cls(
            embeddings=arrays["embeddings"],
            scores=arrays["scores"],
            labels=arrays["labels"],
            metadata=metadata,
            findings=findings,
        )


def study_metadata(studies: Sequence[Study]) -> pd.DataFrame:
    """The :data:`METADATA_COLUMNS` table for ``studies`` (image stats on the raw image)."""
    rows = []
    for s in studies:
        row: dict[str, object] = {
            "site": s.site,
            "manufacturer": s.manufacturer,
            "manufacturer_model": s.manufacturer_model,
            "view_position": s.view_position,
            "sex": s.sex,
            "race_ethnicity": s.race_ethnicity,
            "kvp": float(s.kvp),
            "age": float(s.age),
        }
        row.update({f"img_{k}": v for k, v in image_stats(s.image).items()})
        rows.append(row)
    return pd.DataFrame(rows, columns=list(METADATA_COLUMNS))


def study_labels(studies: Sequence[Study]) -> npt.NDArray[np.int8]:
    """Labels [N, len(FINDINGS)] as int8 in FINDINGS order."""
    return np.array([[s.labels[f] for f in FINDINGS] for s in studies], dtype=np.int8).reshape(
        len(studies), len(FINDINGS)
    )


def build_profile(
    model: RadiographNet,
    studies: Sequence[Study],
    *,
    inputs: npt.NDArray[np.float32] | None = None,
) -> ReferenceProfile:
    """Run ``model`` on ``studies`` and collect the reference profile.

    ``inputs`` may pass already preprocessed images (``to_model_input`` of the studies' images,
    same order) to avoid preprocessing twice during training.
    """
    if not studies:
        raise ValueError("build_profile needs at least one study")
    if inputs is None:
        inputs = to_model_input([s.image for s in studies])
    if len(inputs) != len(studies):
        raise ValueError(f"{len(inputs)} preprocessed inputs for {len(studies)} studies")
    scores, embeddings = predict(model, inputs, batch_size=TRITON_MAX_BATCH * 2)
    if embeddings.shape[1] != EMBEDDING_DIM:
        raise ValueError(
            f"model embedding dim {embeddings.shape[1]} != contract EMBEDDING_DIM {EMBEDDING_DIM}"
        )
    return ReferenceProfile(
        embeddings=embeddings,
        scores=scores,
        labels=study_labels(studies),
        metadata=study_metadata(studies),
    )
