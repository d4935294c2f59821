"""Training: the tiny preset end to end, AUROC, config validation."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import torch

from pipelines.contract import EMBEDDING_DIM, FINDINGS, IMAGE_SIZE
from pipelines.profile import METADATA_COLUMNS, ReferenceProfile
from pipelines.train import TrainConfig, auroc, operating_thresholds, train


def test_tiny_training_run() -> None:
    calls: list[tuple[str, int, int]] = []
    cfg = TrainConfig.tiny()
    torch.manual_seed(123)
    rng_before = torch.random.get_rng_state()
    threads_before = torch.get_num_threads()
    result = train(cfg, progress=lambda stage, done, total: calls.append((stage, done, total)))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    assert torch.get_num_threads() == threads_before
    assert result.config == cfg
    assert result.seconds < 60
    stages = {c[0] for c in calls}
    assert stages == {"generation", "pretraining", "training", "profiling"}
    for stage in stages:
        last = [c for c in calls if c[0] == stage][-1]
        assert last[1] == last[2]
    assert not result.model.training
    with torch.no_grad():
        probs, emb = result.model(torch.randn(5, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert emb.shape == (5, EMBEDDING_DIM)
    assert float(probs.min()) >= 0.0
    assert float(probs.max()) <= 1.0
    assert len(result.profile) == cfg.n_val
    assert result.profile.embeddings.shape == (cfg.n_val, EMBEDDING_DIM)
    expected = {f"val_auroc_{f}" for f in FINDINGS} | {"val_auroc_mean", "val_loss", "train_loss"}
    assert set(result.metrics) == expected
    assert np.isfinite(result.metrics["val_loss"])

    again = train(cfg)
    np.testing.assert_array_equal(again.profile.scores, result.profile.scores)
    np.testing.assert_array_equal(again.profile.embeddings, result.profile.embeddings)


def test_auroc_matches_pair_counting() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    s = np.round(rng.random(60), 1)  # ties on purpose
    pos, neg = s[y == 1], s[y == 0]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert auroc(y, s) == pytest.approx(float(np.mean(pairs)))
    assert auroc([1, 1, 0, 0], [0.9, 0.8, 0.1, 0.2]) == 1.0
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="IMAGE_SIZE"):
        TrainConfig(image_size=256)
    with pytest.raises(ValueError, match=">= 1"):
        TrainConfig(n_train=0)
    demo = TrainConfig.demo()
    assert demo.image_size == IMAGE_SIZE


def test_operating_thresholds_reach_the_target_sensitivity_on_validation() -> None:
    """The highest threshold that still flags at least 85% of the validation positives."""
    rng = np.random.default_rng(3)
    n = 400
    labels = (rng.random((n, len(FINDINGS))) < 0.2).astype(np.int8)
    labels[:, -1] = 0  # a finding without positives keeps 0.5
    scores = np.clip(0.3 * labels + rng.random(labels.shape) * 0.7, 0, 1).astype(np.float32)
    profile = ReferenceProfile(
        embeddings=np.zeros((n, 4), dtype=np.float32),
        scores=scores,
        labels=labels,
        metadata=pd.DataFrame({c: [None] * n for c in METADATA_COLUMNS}),
    )
    chosen = operating_thresholds(profile)
    for j, finding in enumerate(FINDINGS[:-1]):
        pos = scores[labels[:, j] == 1, j]
        sensitivity = float((pos >= chosen[finding]).mean())
        assert 0.85 <= sensitivity < 0.85 + 2.0 / len(pos) + 1e-9, (finding, sensitivity)
    assert chosen[FINDINGS[-1]] == 0.5
