"""Retrain a champion's task heads on recent labelled events, mixed with a replay of its original
training data so the candidate does not forget what it knew.

Why only the heads: production events store the encoder's embedding, never the image (images
are PHI and large). A candidate that changed the encoder could not be trained on those events,
and its embeddings would no longer match the reference the drift monitors compare against. So
the candidate keeps the champion's (foundation) encoder frozen, bit for bit, and fine-tunes the
per-finding linear heads, starting from the champion's head weights.

Training data, mixed in every batch:

* **recent**: the stored embeddings of recent labelled events with their labels ``[N, F]``
  (``-1`` where a finding has no label: that finding's loss term is masked out);
* **replay**: a random sample of the champion's *original* training studies, regenerated
  bit-identically from its recorded :class:`~pipelines.train.TrainConfig` (the synthetic stream
  is seeded per study index) and embedded by the champion's encoder. ``replay_fraction`` of each
  batch comes from it (the change protocol's ``RetrainingPolicy.replay_fraction``). When the
  original config cannot be recovered, or the regenerated validation set does not reproduce the
  champion's reference profile (the generator changed since), the replay falls back to the
  reference profile's validation rows and the result says so in ``notes``.

Reproducible: the same inputs and :class:`RetrainConfig` give bitwise-identical head weights
(torch CPU kernels are deterministic at a fixed thread count, which the config fixes).

The data snapshot hash (SHA-256 over the sorted event ids, their labels, the replay indices and
source, and the seed) identifies exactly which data a candidate saw; it goes to MLflow as lineage.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from pipelines.model import RadiographNet, predict
from pipelines.profile import ReferenceProfile, build_profile, study_labels
from pipelines.synth import RadiographGenerator, Study
from pipelines.train import TrainConfig, evaluate, generate_inputs

#: progress(stage, done, total); stages are "replay", "training", "profiling".
Progress = Callable[[str, int, int], None]
ReplaySource = Literal["original_training", "reference_profile", "none"]

#: Largest difference (in embedding units) between the champion's reference-profile embeddings
#: and those recomputed on the regenerated validation studies for which the regeneration still
#: counts as the original data. Float32 summation order alone gives ~1e-5.
EMBEDDING_TOLERANCE = 1e-3
#: Missing-label marker in :attr:`RecentData.labels`.
NO_LABEL = -1
_HASH_VERSION = b"radwatch-retrain-snapshot-v1"


@dataclass(frozen=True)
class RetrainConfig:
    """Everything that determines a head retraining besides the data.

    ``lr`` is AdamW's rate for the linear heads (higher than for a CNN: a linear model on fixed
    features converges fast). ``max_replay`` caps the replay pool: the pool is sized so replay
    makes up ``replay_fraction`` of all samples seen, up to this many studies.
    """

    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 1e-4
    replay_fraction: float = 0.5
    max_replay: int = 2000
    seed: int = 0
    num_threads: int = 2

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2 or self.max_replay < 0:
            raise ValueError("epochs must be >= 1, batch_size >= 2 and max_replay >= 0")
        if not 0.0 <= self.replay_fraction < 1.0:
            raise ValueError(f"replay_fraction must be in [0, 1); got {self.replay_fraction}")
        if self.lr <= 0 or self.weight_decay < 0 or self.seed < 0 or self.num_threads < 1:
            raise ValueError("lr must be > 0, weight_decay >= 0, seed >= 0, num_threads >= 1")


@dataclass(frozen=True)
class RecentData:
    """Recent labelled production events, row-aligned.

    ``event_ids`` int64 [N] (database ids), ``embeddings`` float32 [N, D] as stored with each
    event, ``labels`` int8 [N, F] with 1/0, or :data:`NO_LABEL` where no label arrived.
    """

    event_ids: npt.NDArray[np.int64]
    embeddings: npt.NDArray[np.float32]
    labels: npt.NDArray[np.int8]

    def __post_init__(self) -> None:
        n = len(self.event_ids)
        if self.embeddings.ndim != 2 or self.embeddings.shape[0] != n:
            raise ValueError(f"embeddings shape {self.embeddings.shape} != ({n}, D)")
        if self.labels.ndim != 2 or self.labels.shape[0] != n:
            raise ValueError(f"labels shape {self.labels.shape} != ({n}, F)")
        if not np.isin(self.labels, (NO_LABEL, 0, 1)).all():
            raise ValueError("labels must be 0, 1 or NO_LABEL (-1)")
        if len(np.unique(self.event_ids)) != n:
            raise ValueError("event_ids must be unique")

    def __len__(self) -> int:
        return len(self.event_ids)


@dataclass
class RetrainResult:
    """The candidate (eval mode), its reference profile and what it was trained on.

    ``metrics``: ``train_loss`` (last epoch, masked BCE), ``n_recent``, ``n_replay`` and the
    validation metrics of :func:`pipelines.train.evaluate` on the new profile.
    """

    model: RadiographNet
    profile: ReferenceProfile
    snapshot_hash: str
    replay_source: ReplaySource
    replay_indices: npt.NDArray[np.int64]
    metrics: dict[str, float]
    config: RetrainConfig
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0


def config_from_params(params: Mapping[str, str]) -> TrainConfig | None:
    """The :class:`TrainConfig` a training run recorded as MLflow params, or None when any field
    is missing or invalid (then the original data cannot be regenerated)."""
    values: dict[str, object] = {}
    for f in fields(TrainConfig):
        raw = params.get(f.name)
        if raw is None:
            return None
        try:
            values[f.name] = float(raw) if f.type in ("float", float) else int(raw)
        except ValueError:
            return None
    try:
        return TrainConfig(**values)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def split_by_time(n: int, holdout_fraction: float, *, min_holdout: int = 1) -> int:
    """Index where the held-out part of ``n`` time-ordered events starts: the newest
    ``holdout_fraction`` are held out (at least ``min_holdout``), never used for training, so the
    dossier judges the candidate on data from after everything it learnt from."""
    if not 0.0 < holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1); got {holdout_fraction}")
    n_holdout = max(min_holdout, math.ceil(n * holdout_fraction))
    if n_holdout >= n:
        raise ValueError(f"{n} events are too few to hold out {n_holdout} and train on the rest")
    return n - n_holdout


def replay_pool_size(n_recent: int, replay_fraction: float, *, available: int, cap: int) -> int:
    """Replay studies needed so replay is ``replay_fraction`` of all samples in an epoch."""
    if replay_fraction <= 0 or available <= 0:
        return 0
    wanted = math.ceil(n_recent * replay_fraction / (1.0 - replay_fraction))
    return int(min(wanted, available, cap))


def mixed_batches(
    n_recent: int,
    n_replay: int,
    *,
    batch_size: int,
    replay_fraction: float,
    gen: torch.Generator,
) -> list[tuple[Tensor, Tensor]]:
    """One epoch of (recent indices, replay indices) batches.

    Every recent row is seen once per epoch in random order; each batch adds
    ``round(len(recent) * f / (1 - f))`` replay rows drawn without replacement from a shuffled
    cycle through the pool, so the replay share is ``f`` in every batch, not just on average.
    """
    if n_recent < 1:
        raise ValueError("at least one recent labelled event is needed")
    use_replay = n_replay > 0 and replay_fraction > 0
    n_recent_per_batch = (
        max(1, round(batch_size * (1.0 - replay_fraction))) if use_replay else batch_size
    )
    ratio = replay_fraction / (1.0 - replay_fraction) if use_replay else 0.0
    order = torch.randperm(n_recent, generator=gen)
    cycle = torch.randperm(n_replay, generator=gen) if use_replay else torch.empty(0)
    pos = 0
    batches: list[tuple[Tensor, Tensor]] = []
    for recent in torch.split(order, n_recent_per_batch):
        k = round(len(recent) * ratio)
        take: list[Tensor] = []
        while k > 0:
            if pos >= len(cycle):
                cycle, pos = torch.randperm(n_replay, generator=gen), 0
            chunk = cycle[pos : pos + k]
            take.append(chunk)
            pos += len(chunk)
            k -= len(chunk)
        replay = torch.cat(take) if take else torch.empty(0, dtype=torch.long)
        batches.append((recent, replay))
    return batches


def score_embeddings(
    model: RadiographNet, embeddings: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Probabilities [N, F] of ``model``'s heads on stored embeddings (no encoder pass): how a
    head-only candidate scores events whose images radwatch never kept."""
    with torch.no_grad():
        emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        logits = torch.cat([head(emb) for head in model.heads], dim=1)
        probs: npt.NDArray[np.float32] = torch.sigmoid(logits).numpy().astype(np.float32)
    return probs


def snapshot_hash(
    recent: RecentData, replay_indices: npt.NDArray[np.int64], source: str, seed: int
) -> str:
    """SHA-256 of the data a run trains on (see the module docstring); event order is ignored."""
    order = np.argsort(recent.event_ids, kind="stable")
    h = hashlib.sha256(_HASH_VERSION)
    h.update(np.ascontiguousarray(recent.event_ids[order], dtype="<i8").tobytes())
    h.update(np.ascontiguousarray(recent.labels[order], dtype=np.int8).tobytes())
    h.update(source.encode())
    h.update(np.ascontiguousarray(np.sort(replay_indices), dtype="<i8").tobytes())
    h.update(int(seed).to_bytes(8, "little", signed=False))
    return h.hexdigest()


def _studies_at(
    synth: RadiographGenerator, indices: npt.NDArray[np.int64], report: Progress
) -> tuple[list[Study], npt.NDArray[np.float32]]:
    """Studies at sorted ``indices`` of the default-site stream, via :func:`generate_inputs`
    (the function training used) on each contiguous run of indices."""
    studies: list[Study] = []
    parts: list[npt.NDArray[np.float32]] = []
    if len(indices) == 0:
        return studies, np.empty((0, 1, 1, 1), dtype=np.float32)
    breaks = np.flatnonzero(np.diff(indices) != 1) + 1
    for run in np.split(indices, breaks):
        s, x = generate_inputs(synth, len(run), start_index=int(run[0]))
        studies.extend(s)
        parts.append(x)
        report("replay", len(studies), len(indices))
    return studies, np.concatenate(parts)


def _validation_matches(
    champion: RadiographNet, original: TrainConfig, reference: ReferenceProfile
) -> tuple[list[Study], npt.NDArray[np.float32], float]:
    """Regenerate the champion's validation studies; the largest embedding difference from its
    reference profile (inf when the sizes differ)."""
    synth = RadiographGenerator(original.seed)
    studies, inputs = generate_inputs(synth, original.n_val, start_index=original.n_train)
    if len(studies) != len(reference):
        return studies, inputs, math.inf
    _, emb = predict(champion, inputs)
    return studies, inputs, float(np.abs(emb - reference.embeddings).max())


def _masked_bce(logits: Tensor, labels: Tensor) -> Tensor:
    mask = (labels >= 0).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, labels.clamp(min=0), reduction="none")
    return (loss * mask).sum() / mask.sum().clamp(min=1.0)


def retrain(
    champion: RadiographNet,
    recent: RecentData,
    *,
    config: RetrainConfig,
    reference: ReferenceProfile,
    original: TrainConfig | None,
    progress: Progress | None = None,
) -> RetrainResult:
    """Fine-tune a copy of ``champion``'s heads (encoder frozen) on ``recent`` plus replay.

    ``reference`` is the champion's reference profile; ``original`` its recorded training config
    (None when unknown). The champion is not modified.
    """
    started = time.perf_counter()
    report: Progress = progress or (lambda stage, done, total: None)
    if len(recent) < 1:
        raise ValueError("retraining needs at least one recent labelled event")
    if recent.embeddings.shape[1] != champion.embedding_dim:
        raise ValueError(
            f"event embeddings have {recent.embeddings.shape[1]} dimensions, the champion's "
            f"encoder {champion.embedding_dim}: the events were produced by another encoder"
        )
    if recent.labels.shape[1] != champion.n_findings:
        raise ValueError(
            f"labels have {recent.labels.shape[1]} findings, the model {champion.n_findings}"
        )
    previous_threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(config.num_threads)
        try:
            result = _run(champion, recent, config, reference, original, report)
        finally:
            torch.set_num_threads(previous_threads)
    result.seconds = time.perf_counter() - started
    return result


def _run(
    champion: RadiographNet,
    recent: RecentData,
    config: RetrainConfig,
    reference: ReferenceProfile,
    original: TrainConfig | None,
    report: Progress,
) -> RetrainResult:
    notes: list[str] = []
    rng = np.random.default_rng([config.seed, 0x5E9A])
    val_studies: list[Study] | None = None
    val_inputs: npt.NDArray[np.float32] | None = None
    source: ReplaySource = "reference_profile"
    if original is None:
        notes.append(
            "The champion's training config is not recorded; replay and the new reference "
            "profile use the champion's reference profile (validation rows) instead."
        )
    else:
        val_studies, val_inputs, diff = _validation_matches(champion, original, reference)
        if diff <= EMBEDDING_TOLERANCE:
            source = "original_training"
        else:
            notes.append(
                "Regenerating the champion's validation studies from its recorded config does "
                f"not reproduce its reference profile (max embedding difference {diff:.3g}); "
                "the generator changed since. Replay uses the reference profile instead."
            )
            val_studies = val_inputs = None

    available = original.n_train if source == "original_training" and original else len(reference)
    n_replay = replay_pool_size(
        len(recent), config.replay_fraction, available=available, cap=config.max_replay
    )
    indices = np.sort(rng.choice(available, size=n_replay, replace=False)).astype(np.int64)
    if n_replay == 0:
        source_used: ReplaySource = "none"
        replay_emb = np.empty((0, champion.embedding_dim), dtype=np.float32)
        replay_labels = np.empty((0, champion.n_findings), dtype=np.int8)
    elif source == "original_training" and original is not None:
        source_used = source
        studies, inputs = _studies_at(RadiographGenerator(original.seed), indices, report)
        _, replay_emb = predict(champion, inputs)
        replay_labels = study_labels(studies)
        del studies, inputs
    else:
        source_used = "reference_profile"
        replay_emb = reference.embeddings[indices]
        replay_labels = reference.labels[indices]
        report("replay", n_replay, n_replay)

    candidate = copy.deepcopy(champion)
    candidate.eval()
    for p in candidate.parameters():
        p.requires_grad_(False)
    head_params = [p for head in candidate.heads for p in head.parameters()]
    for p in head_params:
        p.requires_grad_(True)

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    x_recent = torch.from_numpy(np.ascontiguousarray(recent.embeddings, dtype=np.float32))
    y_recent = torch.from_numpy(recent.labels.astype(np.float32))
    x_replay = torch.from_numpy(np.ascontiguousarray(replay_emb, dtype=np.float32))
    y_replay = torch.from_numpy(replay_labels.astype(np.float32))
    opt = torch.optim.AdamW(head_params, lr=config.lr, weight_decay=config.weight_decay)
    train_loss = _fit(
        candidate, opt, config, gen, (x_recent, y_recent), (x_replay, y_replay), report
    )
    for p in candidate.parameters():
        p.requires_grad_(True)
    candidate.eval()

    report("profiling", 0, 1)
    if val_studies is not None and val_inputs is not None:
        profile = build_profile(candidate, val_studies, inputs=val_inputs)
    else:
        profile = ReferenceProfile(
            embeddings=reference.embeddings,
            scores=score_embeddings(candidate, reference.embeddings),
            labels=reference.labels,
            metadata=reference.metadata.copy(),
            findings=reference.findings,
        )
    report("profiling", 1, 1)
    metrics = evaluate(profile)
    metrics.update(
        {"train_loss": train_loss, "n_recent": float(len(recent)), "n_replay": float(n_replay)}
    )
    return RetrainResult(
        model=candidate,
        profile=profile,
        snapshot_hash=snapshot_hash(recent, indices, source_used, config.seed),
        replay_source=source_used,
        replay_indices=indices,
        metrics=metrics,
        config=config,
        notes=notes,
    )


def _fit(
    model: RadiographNet,
    opt: torch.optim.Optimizer,
    config: RetrainConfig,
    gen: torch.Generator,
    recent: tuple[Tensor, Tensor],
    replay: tuple[Tensor, Tensor],
    report: Progress,
) -> float:
    """Mini-batch AdamW over :func:`mixed_batches`; the last epoch's mean loss."""
    x_recent, y_recent = recent
    x_replay, y_replay = replay
    last = float("nan")
    for epoch in range(config.epochs):
        losses: list[float] = []
        batches = mixed_batches(
            len(x_recent),
            len(x_replay),
            batch_size=config.batch_size,
            replay_fraction=config.replay_fraction,
            gen=gen,
        )
        for r_idx, p_idx in batches:
            x = torch.cat([x_recent[r_idx], x_replay[p_idx]])
            y = torch.cat([y_recent[r_idx], y_replay[p_idx]])
            logits = torch.cat([head(x) for head in model.heads], dim=1)
            loss = _masked_bce(logits, y)
            opt.zero_grad(set_to_none=True)
            torch.autograd.backward(loss)
            opt.step()
            losses.append(float(loss.detach()))
        last = float(np.mean(losses)) if losses else float("nan")
        report("training", epoch + 1, config.epochs)
    return last
