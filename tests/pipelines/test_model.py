"""RadiographNet shapes, save/load round trip and the serving export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipelines.contract import EMBEDDING_DIM, FINDINGS, IMAGE_SIZE, TRITON_MAX_BATCH
from pipelines.model import RadiographNet, export_torchscript, load_exported, load_model, save_model


@pytest.fixture(scope="module")
def model() -> RadiographNet:
    torch.manual_seed(0)
    net = RadiographNet(width=8)
    # One training step so BatchNorm running statistics differ from their defaults and a
    # save/export that dropped buffers would show.
    net.train()
    net(torch.randn(4, 1, IMAGE_SIZE, IMAGE_SIZE) * 2 + 1)
    return net.eval()


@torch.no_grad()
def test_forward_shapes_and_range(model: RadiographNet) -> None:
    probs, emb = model(torch.randn(3, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert probs.shape == (3, len(FINDINGS))
    assert emb.shape == (3, EMBEDDING_DIM)
    assert float(probs.min()) >= 0.0
    assert float(probs.max()) <= 1.0
    logits, emb2 = model.logits_and_embedding(torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert torch.allclose(
        torch.sigmoid(logits), model(torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE))[0]
    )
    assert emb2.shape == (2, EMBEDDING_DIM)


def test_save_load_round_trip(model: RadiographNet, tmp_path: Path) -> None:
    save_model(model, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "config.json").read_text())
    assert meta["width"] == 8
    assert meta["findings"] == list(FINDINGS)
    loaded = load_model(tmp_path / "m")
    assert not loaded.training
    x = torch.randn(5, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.no_grad():
        for a, b in zip(model(x), loaded(x), strict=True):
            assert torch.equal(a, b)


def test_load_model_missing_dir_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="save_model"):
        load_model(tmp_path / "nothing")


def test_export_matches_module(model: RadiographNet, tmp_path: Path) -> None:
    path = tmp_path / "serve" / "model.pt2"
    export_torchscript(model, path)
    assert not model.training
    exported = load_exported(path)
    for batch in (1, 7, TRITON_MAX_BATCH):
        x = torch.randn(batch, 1, IMAGE_SIZE, IMAGE_SIZE)
        with torch.no_grad():
            ref = model(x)
            got = exported(x)
        assert len(got) == 2
        for a, b in zip(ref, got, strict=True):
            assert a.shape == b.shape
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_export_loads_with_plain_torch(model: RadiographNet, tmp_path: Path) -> None:
    """The Triton model.py only imports torch; the archive must not need pipelines.*."""
    path = tmp_path / "model.pt2"
    export_torchscript(model, path)
    module = torch.export.load(str(path)).module()
    probs, emb = module(torch.zeros(2, 1, IMAGE_SIZE, IMAGE_SIZE))
    assert probs.shape == (2, len(FINDINGS))
    assert emb.shape == (2, EMBEDDING_DIM)
