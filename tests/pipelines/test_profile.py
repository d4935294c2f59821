"""ReferenceProfile: build from a model, save/load round trip, per-site views, shape checks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from pipelines.model import RadiographNet
from pipelines.profile import METADATA_COLUMNS, ReferenceProfile, build_profile
from pipelines.synth import RadiographGenerator


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    torch.manual_seed(0)
    studies = RadiographGenerator(seed=31).generate(24)
    return build_profile(RadiographNet(width=8).eval(), studies)


def test_build_profile_shapes_and_columns(profile: ReferenceProfile) -> None:
    assert len(profile) == 24
    assert profile.embeddings.shape == (24, EMBEDDING_DIM)
    assert profile.embeddings.dtype == np.float32
    assert profile.scores.shape == (24, len(FINDINGS))
    assert profile.scores.dtype == np.float32
    assert float(profile.scores.min()) >= 0.0
    assert float(profile.scores.max()) <= 1.0
    assert profile.labels.dtype == np.int8
    assert tuple(profile.metadata.columns) == METADATA_COLUMNS
    assert set(profile.metadata["site"]) <= {"north", "central", "south"}
    assert profile.metadata["img_height"].isin([160.0, 192.0, 256.0]).all()


def test_save_load_round_trip(profile: ReferenceProfile, tmp_path: Path) -> None:
    profile.save(tmp_path / "ref")
    manifest = json.loads((tmp_path / "ref" / "manifest.json").read_text())
    assert manifest["findings"] == list(FINDINGS)
    assert manifest["embedding_dim"] == EMBEDDING_DIM
    loaded = ReferenceProfile.load(tmp_path / "ref")
    np.testing.assert_array_equal(loaded.embeddings, profile.embeddings)
    np.testing.assert_array_equal(loaded.scores, profile.scores)
    np.testing.assert_array_equal(loaded.labels, profile.labels)
    pd.testing.assert_frame_equal(loaded.metadata, profile.metadata)
    assert loaded.findings == FINDINGS


def test_for_site(profile: ReferenceProfile) -> None:
    site = str(profile.metadata["site"].iloc[0])
    part = profile.for_site(site)
    mask = (profile.metadata["site"] == site).to_numpy()
    assert len(part) == int(mask.sum())
    np.testing.assert_array_equal(part.embeddings, profile.embeddings[mask])
    assert set(part.metadata["site"]) == {site}
    with pytest.raises(ValueError, match="no rows for site 'mars'"):
        profile.for_site("mars")


def test_load_rejects_files_that_disagree(profile: ReferenceProfile, tmp_path: Path) -> None:
    profile.save(tmp_path / "ref")
    np.save(tmp_path / "ref" / "scores.npy", profile.scores[:, :3])
    with pytest.raises(ValueError, match=r"scores\.npy has shape \(24, 3\)"):
        ReferenceProfile.load(tmp_path / "ref")
    profile.save(tmp_path / "ref2")
    profile.metadata.iloc[:5].to_parquet(tmp_path / "ref2" / "metadata.parquet", index=False)
    with pytest.raises(ValueError, match="5 rows"):
        ReferenceProfile.load(tmp_path / "ref2")
    with pytest.raises(FileNotFoundError, match=r"ReferenceProfile\.save"):
        ReferenceProfile.load(tmp_path / "missing")


def test_constructor_rejects_inconsistent_parts(profile: ReferenceProfile) -> None:
    with pytest.raises(ValueError, match="embeddings shape"):
        ReferenceProfile(
            embeddings=profile.embeddings[:3],
            scores=profile.scores,
            labels=profile.labels,
            metadata=profile.metadata,
        )
    with pytest.raises(ValueError, match="lacks columns"):
        ReferenceProfile(
            embeddings=profile.embeddings,
            scores=profile.scores,
            labels=profile.labels,
            metadata=profile.metadata.drop(columns=["kvp"]),
        )
