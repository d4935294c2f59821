"""TritonClient against a real tritonserver: inference equals the torch module, errors are typed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch

from pipelines.contract import EMBEDDING_DIM, FINDINGS, IMAGE_SIZE
from pipelines.model import RadiographNet
from services.core.errors import (
    BadRequestError,
    ModelNotLoadedError,
    ServingUnavailableError,
)
from services.core.processes import free_port
from services.serving.client import TritonClient
from tests.fixtures.triton import ExportedModelRepo, make_test_model

ATOL = 1e-5


@dataclass(frozen=True)
class Loaded:
    name: str
    model: RadiographNet


def _images(n: int, seed: int = 0) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, size=(n, 1, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)


def _torch_outputs(
    model: RadiographNet, x: npt.NDArray[np.float32]
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    with torch.inference_mode():
        probs, emb = model(torch.from_numpy(x))
    return probs.numpy(), emb.numpy()


@pytest.fixture(scope="module")
def loaded(exported_model_repo: ExportedModelRepo, triton_client: TritonClient) -> Iterator[Loaded]:
    model = make_test_model(seed=1)
    name = exported_model_repo.unique_name("client")
    exported_model_repo.export(model, name, 1)
    triton_client.load_model(name)
    yield Loaded(name, model)
    triton_client.unload_model(name)


def test_model_is_ready_after_load(loaded: Loaded, triton_client: TritonClient) -> None:
    assert triton_client.is_model_ready(loaded.name)
    assert triton_client.is_model_ready(loaded.name, 1)
    assert not triton_client.is_model_ready(loaded.name, 2)


@pytest.mark.parametrize("n", [1, 100])
def test_infer_matches_the_torch_module(
    loaded: Loaded, triton_client: TritonClient, n: int
) -> None:
    x = _images(n, seed=n)
    out = triton_client.infer(loaded.name, 1, x)
    probs, emb = _torch_outputs(loaded.model, x)
    assert out.probs.shape == (n, len(FINDINGS))
    assert out.embeddings.shape == (n, EMBEDDING_DIM)
    assert out.probs.dtype == np.float32
    assert out.embeddings.dtype == np.float32
    np.testing.assert_allclose(out.probs, probs, atol=ATOL, rtol=0)
    np.testing.assert_allclose(out.embeddings, emb, atol=ATOL, rtol=0)
    assert (out.model_name, out.model_version) == (loaded.name, 1)


def test_split_batches_keep_row_order(loaded: Loaded, triton_client: TritonClient) -> None:
    # 130 rows = 64 + 64 + 2: each row must come back where it went in, across chunk borders.
    x = _images(130, seed=7)
    whole = triton_client.infer(loaded.name, None, x)
    for rows in (slice(0, 1), slice(63, 66), slice(128, 130)):
        part = triton_client.infer(loaded.name, None, np.ascontiguousarray(x[rows]))
        np.testing.assert_allclose(whole.probs[rows], part.probs, atol=ATOL, rtol=0)
        np.testing.assert_allclose(whole.embeddings[rows], part.embeddings, atol=ATOL, rtol=0)


def test_client_is_safe_to_share_across_threads(
    loaded: Loaded, triton_client: TritonClient
) -> None:
    batches = [_images(3, seed=100 + i) for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        outs = list(pool.map(lambda b: triton_client.infer(loaded.name, 1, b), batches))
    for batch, out in zip(batches, outs, strict=True):
        np.testing.assert_allclose(
            out.probs, _torch_outputs(loaded.model, batch)[0], atol=ATOL, rtol=0
        )


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        (np.zeros((2, 128, 128), np.float32), "shape"),
        (np.zeros((0, 1, 128, 128), np.float32), "shape"),
        (np.zeros((1, 1, 64, 64), np.float32), "shape"),
        (np.zeros((1, 1, 128, 128), np.float64), "float32"),
    ],
)
def test_bad_input_is_rejected_before_the_server(
    loaded: Loaded, triton_client: TritonClient, batch: npt.NDArray[Any], match: str
) -> None:
    with pytest.raises(BadRequestError, match=match):
        triton_client.infer(loaded.name, 1, batch)


def test_unknown_model_and_version(loaded: Loaded, triton_client: TritonClient) -> None:
    x = _images(1)
    with pytest.raises(ModelNotLoadedError, match="'no-such-model'"):
        triton_client.infer("no-such-model", None, x)
    with pytest.raises(ModelNotLoadedError, match="version 9"):
        triton_client.infer(loaded.name, 9, x)
    with pytest.raises(ModelNotLoadedError, match="could not load model 'no-such-model'"):
        triton_client.load_model("no-such-model")
    assert not triton_client.is_model_ready("no-such-model")


def test_unload_then_infer_is_model_not_loaded(
    exported_model_repo: ExportedModelRepo, triton_client: TritonClient
) -> None:
    name = exported_model_repo.unique_name("unload")
    exported_model_repo.export(make_test_model(seed=3), name, 1)
    triton_client.load_model(name)
    triton_client.infer(name, 1, _images(1))
    triton_client.unload_model(name)
    assert not triton_client.is_model_ready(name)
    with pytest.raises(ModelNotLoadedError, match=name) as info:
        triton_client.infer(name, 1, _images(1))
    assert "load it" in info.value.message


def test_two_versions_side_by_side(
    exported_model_repo: ExportedModelRepo, triton_client: TritonClient
) -> None:
    name = exported_model_repo.unique_name("versions")
    champion, candidate = make_test_model(seed=10), make_test_model(seed=11)
    exported_model_repo.export(champion, name, 1)
    triton_client.load_model(name)
    exported_model_repo.export(candidate, name, 2)
    triton_client.load_model(name)  # reload picks up version 2 and keeps version 1
    try:
        assert triton_client.is_model_ready(name, 1)
        assert triton_client.is_model_ready(name, 2)
        x = _images(4, seed=5)
        v1 = triton_client.infer(name, 1, x)
        v2 = triton_client.infer(name, 2, x)
        default = triton_client.infer(name, None, x)
        np.testing.assert_allclose(v1.probs, _torch_outputs(champion, x)[0], atol=ATOL, rtol=0)
        np.testing.assert_allclose(v2.probs, _torch_outputs(candidate, x)[0], atol=ATOL, rtol=0)
        assert np.abs(v1.probs - v2.probs).max() > 1e-3
        assert (v1.model_version, v2.model_version, default.model_version) == (1, 2, 2)
    finally:
        triton_client.unload_model(name)


def test_dead_port_is_serving_unavailable_quickly() -> None:
    client = TritonClient(f"127.0.0.1:{free_port()}", timeout_s=3)
    x = _images(1)
    t0 = time.monotonic()
    with pytest.raises(ServingUnavailableError, match="is not reachable") as info:
        client.infer("anything", None, x)
    assert time.monotonic() - t0 < 5
    assert "RADWATCH_TRITON_URL" in info.value.message
    with pytest.raises(ServingUnavailableError):
        client.server_version()
    with pytest.raises(ServingUnavailableError):
        client.load_model("anything")
    assert client.is_live() is False


def test_url_with_scheme_is_refused() -> None:
    with pytest.raises(BadRequestError, match="without a scheme"):
        TritonClient("http://127.0.0.1:8000")
