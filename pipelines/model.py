"""RadiographNet: the stand-in for a radiology foundation model (encoder + per-finding heads).

Real deployments put a large pre-trained encoder here; radwatch only needs the same *shape* of
model: an encoder whose embedding the drift monitors compare against a reference, and one
independent sigmoid head per finding. The encoder is small enough to pre-train and fine-tune on
a 2-core CPU in a couple of minutes.

Two on-disk formats:

* :func:`save_model` / :func:`load_model`: a directory with ``weights.pt`` (state_dict) and
  ``config.json`` (constructor arguments). This is the MLflow artifact format; it is trainable.
* :func:`export_torchscript`: a single self-contained ``torch.export`` archive (``.pt2``) for the
  Triton Python backend. ``torch.jit`` is deprecated in torch 2.13 (every trace/save/load warns),
  so the serving artifact uses ``torch.export`` instead. A Triton ``model.py`` loads it with only
  ``torch`` imported::

      module = torch.export.load(path).module()
      probs, embedding = module(images)   # images: float32 [B, 1, 128, 128], 1 <= B <= 64

  :func:`load_exported` does exactly that.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn

from pipelines.contract import (
    EMBEDDING_DIM,
    FINDINGS,
    IMAGE_SIZE,
    TRITON_INPUT,
    TRITON_MAX_BATCH,
    TRITON_OUTPUT_EMBEDDING,
    TRITON_OUTPUT_PROBS,
)
from pipelines.preprocess import NORM_MEAN, NORM_STD
from pipelines.spec import ModelSpec, parse_spec

WEIGHTS_FILE = "weights.pt"
CONFIG_FILE = "config.json"
#: Bumped when the architecture changes in a way that old weights cannot load into.
ARCHITECTURE_VERSION = 1


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of :class:`RadiographNet`, stored next to the weights."""

    width: int = 32
    embedding_dim: int = EMBEDDING_DIM
    n_findings: int = len(FINDINGS)


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3x3 convolutions, the first with stride 2 (halves the resolution)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class RadiographNet(nn.Module):
    """Small CNN encoder -> EMBEDDING_DIM embedding -> one linear sigmoid head per finding.

    Input: float32 ``[B, 1, 128, 128]`` from :func:`pipelines.preprocess.to_model_input`.
    The encoder pools the mean (global findings: cardiomegaly, effusion) and the max (small focal
    findings: a nodule covers < 1 % of the image and would vanish in a mean) of the last 8x8
    feature map, plus the max of the 16x16 map before it (finer detail for small nodules), and
    projects them to the embedding.
    """

    def __init__(
        self,
        width: int = 32,
        embedding_dim: int = EMBEDDING_DIM,
        n_findings: int = len(FINDINGS),
    ) -> None:
        super().__init__()
        if width < 4 or embedding_dim < 1 or n_findings < 1:
            raise ValueError(
                f"RadiographNet needs width >= 4, embedding_dim >= 1, n_findings >= 1; got "
                f"width={width}, embedding_dim={embedding_dim}, n_findings={n_findings}"
            )
        self.config = ModelConfig(width=width, embedding_dim=embedding_dim, n_findings=n_findings)
        w = width
        # 128 -> 64 (stem) -> 32 -> 16 -> 8
        self.stem = nn.Sequential(
            nn.Conv2d(1, w // 2, 5, stride=2, padding=2, bias=False),
            nn.BatchNorm2d(w // 2),
            nn.ReLU(inplace=True),
        )
        self.blocks = nn.Sequential(
            _conv_block(w // 2, w),
            _conv_block(w, 2 * w),
            _conv_block(2 * w, 4 * w),
        )
        self.project = nn.Linear(10 * w, embedding_dim)
        self.heads = nn.ModuleList([nn.Linear(embedding_dim, 1) for _ in range(n_findings)])

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    @property
    def n_findings(self) -> int:
        return self.config.n_findings

    def embed(self, x: Tensor) -> Tensor:
        """Embedding ``[B, embedding_dim]`` (no activation: monitors see the linear features)."""
        mid = self.blocks[1](self.blocks[0](self.stem(x)))
        feats = self.blocks[2](mid)
        pooled = torch.cat(
            [feats.mean(dim=(2, 3)), feats.amax(dim=(2, 3)), mid.amax(dim=(2, 3))], dim=1
        )
        out: Tensor = self.project(pooled)
        return out

    def logits_and_embedding(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Pre-sigmoid logits ``[B, n_findings]`` and embedding; use for training losses."""
        emb = self.embed(x)
        logits = torch.cat([head(emb) for head in self.heads], dim=1)
        return logits, emb

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Probabilities ``[B, n_findings]`` (sigmoid) and embedding ``[B, embedding_dim]``."""
        logits, emb = self.logits_and_embedding(x)
        return torch.sigmoid(logits), emb


def save_model(model: RadiographNet, path: Path) -> None:
    """Write ``path/weights.pt`` and ``path/config.json`` (the directory is created)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path / WEIGHTS_FILE)
    meta: dict[str, Any] = {
        "architecture": "RadiographNet",
        "architecture_version": ARCHITECTURE_VERSION,
        "findings": list(FINDINGS),
        **asdict(model.config),
    }
    (path / CONFIG_FILE).write_text(json.dumps(meta, indent=2))


def load_model(path: Path) -> RadiographNet:
    """Load a model written by :func:`save_model`, in eval mode, on the CPU.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file that is missing or wrong.
    """
    path = Path(path)
    cfg_file, weights_file = path / CONFIG_FILE, path / WEIGHTS_FILE
    for f in (cfg_file, weights_file):
        if not f.is_file():
            raise FileNotFoundError(
                f"{f} not found; pass the directory written by pipelines.model.save_model"
            )
    meta = json.loads(cfg_file.read_text())
    if meta.get("architecture") != "RadiographNet":
        raise ValueError(f"{cfg_file} describes {meta.get('architecture')!r}, not RadiographNet")
    if meta.get("architecture_version") != ARCHITECTURE_VERSION:
        raise ValueError(
            f"{cfg_file} has architecture_version {meta.get('architecture_version')}, this code "
            f"reads version {ARCHITECTURE_VERSION}; re-train or use the matching radwatch release"
        )
    model = RadiographNet(
        width=int(meta["width"]),
        embedding_dim=int(meta["embedding_dim"]),
        n_findings=int(meta["n_findings"]),
    )
    state = torch.load(weights_file, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    return model


def export_torchscript(model: RadiographNet, path: Path) -> None:
    """Write a self-contained serving archive (``torch.export``, ``.pt2``) to ``path``.

    The name is kept from the contract although the format is ``torch.export`` (see the module
    docstring for why and how to load it). The batch dimension is dynamic, from 1 to
    ``TRITON_MAX_BATCH``; the image size is fixed at IMAGE_SIZE². The model is exported in eval
    mode (BatchNorm uses its running statistics), and its own training mode is restored after.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model.eval()
    try:
        example = torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.float32)
        batch = torch.export.Dim("batch", min=1, max=TRITON_MAX_BATCH)
        program = torch.export.export(model, (example,), dynamic_shapes={"x": {0: batch}})
        torch.export.save(program, str(path))
    finally:
        model.train(was_training)


def load_exported(path: Path) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Load an archive written by :func:`export_torchscript`; call it like the module."""
    module: Callable[[Tensor], tuple[Tensor, Tensor]] = torch.export.load(str(path)).module()
    return module


def predict(
    model: nn.Module, inputs: npt.NDArray[np.float32], *, batch_size: int = 256
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Run ``model`` in eval mode over preprocessed ``inputs`` [N, 1, H, W] in batches.

    Returns float32 probabilities [N, n_findings] and embeddings [N, embedding_dim]. The model's
    training mode is restored afterwards.
    """
    was_training = model.training
    model.eval()
    probs: list[npt.NDArray[np.float32]] = []
    embs: list[npt.NDArray[np.float32]] = []
    try:
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(inputs[start : start + batch_size]))
                p, e = model(batch)
                probs.append(p.numpy().astype(np.float32, copy=False))
                embs.append(e.numpy().astype(np.float32, copy=False))
    finally:
        model.train(was_training)
    if not probs:
        raise ValueError("predict needs at least one input image")
    return np.concatenate(probs), np.concatenate(embs)


def builtin_spec(
    config: ModelConfig | None = None, *, thresholds: dict[str, float] | None = None
) -> ModelSpec:
    """RadiographNet as a :class:`~pipelines.spec.ModelSpec`, like any imported model.

    The only place outside this model's own code where :mod:`pipelines.contract` reaches the
    rest of radwatch: everything downstream reads the spec. ``probe`` retraining, because
    radwatch refits the heads on stored embeddings.
    """
    config = config or ModelConfig()
    if config.n_findings != len(FINDINGS):
        raise ValueError(f"RadiographNet has {len(FINDINGS)} findings, got {config.n_findings}")
    thresholds = thresholds or {}
    return parse_spec(
        {
            "runtime": "torch-export",
            "modality": "radiograph",
            "dimensionality": 2,
            "input": {"name": TRITON_INPUT, "shape": [1, IMAGE_SIZE, IMAGE_SIZE]},
            "preprocessing": {
                "resize_mode": "bilinear",
                "antialias": True,
                "normalize": {"kind": "fixed", "mean": NORM_MEAN, "std": NORM_STD},
            },
            "outputs": [
                {
                    "kind": "findings",
                    "tensor": TRITON_OUTPUT_PROBS,
                    "findings": [
                        {"name": f, "threshold": thresholds.get(f, 0.5)} for f in FINDINGS
                    ],
                },
                {
                    "kind": "embedding",
                    "tensor": TRITON_OUTPUT_EMBEDDING,
                    "width": config.embedding_dim,
                },
            ],
            "retraining": {"kind": "probe"},
            "max_batch_size": TRITON_MAX_BATCH,
            "description": "RadiographNet: radwatch's built-in chest radiograph classifier "
            "(small CNN encoder and one sigmoid head per finding), trained on synthetic images.",
        }
    )
