"""Retraining: reproducible head fine-tuning with the encoder frozen, replay of the champion's
original training data, the data snapshot hash, and the acquisition perturbations.

The champion is trained once per test process (:func:`trained_champion`, also used by the
lifecycle service tests) on a small config that still learns something (~20 s on 2 cores).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

from pipelines.contract import FINDINGS
from pipelines.model import predict
from pipelines.perturb import PERTURBATIONS, perturb, perturb_batch
from pipelines.retrain import (
    NO_LABEL,
    RecentData,
    RetrainConfig,
    RetrainResult,
    _studies_at,
    config_from_params,
    mixed_batches,
    replay_pool_size,
    retrain,
    score_embeddings,
    snapshot_hash,
    split_by_time,
)
from pipelines.synth import RadiographGenerator, ShiftSpec
from pipelines.train import TrainConfig, TrainResult, generate_inputs, train

CHAMPION_CONFIG = TrainConfig(
    n_train=500, n_val=200, epochs=5, batch_size=32, width=8, pretrain_epochs=0, seed=3
)


@functools.cache
def trained_champion() -> TrainResult:
    """The shared champion (never modified: retraining works on a copy)."""
    return train(CHAMPION_CONFIG)


def recent_events(
    n: int = 240, *, seed: int = 11, shift: ShiftSpec | None = None
) -> tuple[RecentData, np.ndarray]:
    """Events as production stores them: the champion's embeddings of new studies, with labels
    (every third study lacks its nodule label). Also returns the champion's scores."""
    champion = trained_champion().model
    studies, x = generate_inputs(RadiographGenerator(seed), n, start_index=0)
    if shift is not None:
        studies = RadiographGenerator(seed).generate(n, shift=shift)
        from pipelines.preprocess import to_model_input

        x = to_model_input([s.image for s in studies])
    scores, emb = predict(champion, x)
    labels = np.array([[s.labels[f] for f in FINDINGS] for s in studies], dtype=np.int8)
    labels[::3, FINDINGS.index("nodule")] = NO_LABEL
    ids = np.arange(1000, 1000 + n, dtype=np.int64)
    return RecentData(ids, emb, labels), scores


def _config(**kw: object) -> RetrainConfig:
    base = {"epochs": 4, "batch_size": 32, "replay_fraction": 0.5, "max_replay": 200, "seed": 7}
    return RetrainConfig(**{**base, **kw})  # type: ignore[arg-type]


@functools.cache
def _base() -> tuple[RecentData, RetrainResult, list[tuple[str, int, int]]]:
    """One retraining with the default test config, shared by the tests that only inspect it."""
    champ = trained_champion()
    recent, _ = recent_events()
    calls: list[tuple[str, int, int]] = []
    result = retrain(
        champ.model,
        recent,
        config=_config(),
        reference=champ.profile,
        original=CHAMPION_CONFIG,
        progress=lambda *c: calls.append(c),
    )
    return recent, result, calls


def _heads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if k.startswith("heads.")}


def test_same_seed_gives_bitwise_identical_heads_and_the_encoder_is_frozen() -> None:
    champ = trained_champion()
    recent, a, calls = _base()
    b = retrain(
        champ.model, recent, config=_config(), reference=champ.profile, original=CHAMPION_CONFIG
    )
    c = retrain(
        champ.model,
        recent,
        config=_config(seed=8),
        reference=champ.profile,
        original=CHAMPION_CONFIG,
    )
    for key, value in _heads(a.model).items():
        assert torch.equal(value, _heads(b.model)[key]), key
    assert any(not torch.equal(v, _heads(c.model)[k]) for k, v in _heads(a.model).items())
    assert a.snapshot_hash == b.snapshot_hash != c.snapshot_hash
    # The encoder is the champion's, bit for bit; only the heads moved.
    champion_state = champ.model.state_dict()
    for key, value in a.model.state_dict().items():
        same = torch.equal(value, champion_state[key])
        assert same != key.startswith("heads."), key
    # The champion itself is untouched and stays in eval mode.
    assert not champ.model.training
    assert {s for s, _, _ in calls} == {"replay", "training", "profiling"}
    assert ("training", 4, 4) in calls


def test_replay_is_the_champions_original_training_data() -> None:
    champ = trained_champion()
    recent, result, _ = _base()
    assert result.replay_source == "original_training"
    assert result.notes == []
    idx = result.replay_indices
    assert len(idx) == replay_pool_size(
        len(recent), 0.5, available=CHAMPION_CONFIG.n_train, cap=200
    )
    assert idx.min() >= 0
    assert idx.max() < CHAMPION_CONFIG.n_train
    assert np.all(np.diff(idx) > 0)
    # Regenerated studies at those indices are exactly the training studies train() used.
    _, all_x = generate_inputs(
        RadiographGenerator(CHAMPION_CONFIG.seed), CHAMPION_CONFIG.n_train, start_index=0
    )
    studies, x = _studies_at(RadiographGenerator(CHAMPION_CONFIG.seed), idx[:25], lambda *a: None)
    np.testing.assert_array_equal(x, all_x[idx[:25]])
    assert len(studies) == 25
    # The new reference profile is the champion's validation set seen through the candidate.
    np.testing.assert_allclose(result.profile.embeddings, champ.profile.embeddings, atol=1e-4)
    np.testing.assert_allclose(
        result.profile.scores, score_embeddings(result.model, champ.profile.embeddings), atol=1e-5
    )
    assert result.profile.metadata.equals(champ.profile.metadata)
    assert result.metrics["n_replay"] == len(idx)


def test_replay_changes_the_candidate_and_falls_back_to_the_reference_profile() -> None:
    champ = trained_champion()
    recent, with_replay, _ = _base()
    without = retrain(
        champ.model,
        recent,
        config=_config(replay_fraction=0.0),
        reference=champ.profile,
        original=CHAMPION_CONFIG,
    )
    assert without.replay_source == "none"
    assert len(without.replay_indices) == 0
    assert any(
        not torch.equal(v, _heads(without.model)[k]) for k, v in _heads(with_replay.model).items()
    )
    unknown = retrain(champ.model, recent, config=_config(), reference=champ.profile, original=None)
    assert unknown.replay_source == "reference_profile"
    assert unknown.replay_indices.max() < len(champ.profile)
    assert "not recorded" in unknown.notes[0]
    # A config that does not reproduce the reference (another seed) is detected, not trusted.
    wrong = dataclasses.replace(CHAMPION_CONFIG, seed=CHAMPION_CONFIG.seed + 1)
    mismatch = retrain(
        champ.model, recent, config=_config(), reference=champ.profile, original=wrong
    )
    assert mismatch.replay_source == "reference_profile"
    assert "does not reproduce" in mismatch.notes[0]


def test_every_batch_mixes_replay_at_the_policy_fraction() -> None:
    gen = torch.Generator().manual_seed(0)
    batches = mixed_batches(100, 30, batch_size=20, replay_fraction=0.25, gen=gen)
    recent_seen = torch.cat([r for r, _ in batches])
    assert sorted(recent_seen.tolist()) == list(range(100))
    for recent, replay in batches:
        assert len(replay) == round(len(recent) * 0.25 / 0.75)
        assert replay.max() < 30
    full = [b for b in batches if len(b[0]) == 15]
    assert full
    assert all(len(p) == 5 for _, p in full)
    none = mixed_batches(10, 0, batch_size=4, replay_fraction=0.5, gen=gen)
    assert all(len(p) == 0 for _, p in none)


def test_snapshot_hash_covers_ids_labels_replay_and_seed() -> None:
    recent, _ = recent_events(30)
    idx = np.array([1, 5, 9], dtype=np.int64)
    base = snapshot_hash(recent, idx, "original_training", 0)
    order = np.random.default_rng(0).permutation(len(recent))
    shuffled = RecentData(recent.event_ids[order], recent.embeddings[order], recent.labels[order])
    assert snapshot_hash(shuffled, idx, "original_training", 0) == base
    flipped = recent.labels.copy()
    flipped[0, 0] = 1 - flipped[0, 0]
    relabelled = RecentData(recent.event_ids, recent.embeddings, flipped)
    assert snapshot_hash(relabelled, idx, "original_training", 0) != base
    assert snapshot_hash(recent, idx[:2], "original_training", 0) != base
    assert snapshot_hash(recent, idx, "reference_profile", 0) != base
    assert snapshot_hash(recent, idx, "original_training", 1) != base
    assert len(base) == 64


def test_config_from_params_round_trip() -> None:
    params = {k: str(v) for k, v in dataclasses.asdict(CHAMPION_CONFIG).items()}
    assert config_from_params(params) == CHAMPION_CONFIG
    assert config_from_params({**params, "extra": "x"}) == CHAMPION_CONFIG
    assert config_from_params({k: v for k, v in params.items() if k != "n_val"}) is None
    assert config_from_params({**params, "epochs": "many"}) is None
    assert config_from_params({"seed": "1"}) is None


def test_time_split_and_validation() -> None:
    assert split_by_time(100, 0.3) == 70
    assert split_by_time(100, 0.01, min_holdout=30) == 70
    with pytest.raises(ValueError, match="too few"):
        split_by_time(20, 0.3, min_holdout=30)
    with pytest.raises(ValueError, match="replay_fraction"):
        RetrainConfig(replay_fraction=1.0)
    recent, _ = recent_events(10)
    bad = RecentData(recent.event_ids, recent.embeddings[:, :10], recent.labels)
    with pytest.raises(ValueError, match="another encoder"):
        retrain(
            trained_champion().model,
            bad,
            config=_config(),
            reference=trained_champion().profile,
            original=None,
        )


def test_perturbations_are_bounded_deterministic_and_change_the_image() -> None:
    image = RadiographGenerator(0).generate(1)[0].image
    for kind in PERTURBATIONS:
        out = perturb(image, kind, rng=np.random.default_rng(1))
        assert out.shape == image.shape
        assert out.dtype == np.float32
        assert float(out.min()) >= 0.0
        assert float(out.max()) <= 1.0
        assert float(np.abs(out - image).mean()) > 1e-3, kind
    a = perturb_batch([image, image], "noise", seed=5)
    b = perturb_batch([image, image], "noise", seed=5)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], a[1])  # each image has its own stream
    contrast = perturb(image, "contrast", strength=0.5)
    assert contrast.std() < image.std()
    assert perturb(image, "exposure", strength=1.5).mean() < image.mean()
    with pytest.raises(ValueError, match="unknown perturbation"):
        perturb(image, "rotate")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="> 0"):
        perturb(image, "contrast", strength=0.0)
