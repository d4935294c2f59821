"""Foreign models on the real tritonserver: an ONNX 2-D classifier and a torch.export 3-D model
with two channels and a dynamic depth, exported by export_version from their specs and served
by the one generic Python-backend model. Triton's answers must equal the model's own runtime
(onnxruntime, torch eager) on the same prepared inputs.

Only the ``python`` flavour runs here: the bundled server has no native onnxruntime backend
(tests/pipelines/test_export_triton.py checks that flavour's config text).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import torch
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from pipelines.export_triton import export_version
from pipelines.preprocess import prepare
from pipelines.spec import ModelSpec
from services.serving.server import TritonServerProcess
from tests.fixtures.serving_models import (
    TinyVolumeNet,
    classifier,
    classifier_spec,
    export_onnx,
    export_pt2,
    volume_net,
    volume_spec,
)
from tests.fixtures.triton import ExportedModelRepo

ATOL = 1e-5
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Served:
    name: str
    spec: ModelSpec
    artifact: Path


@pytest.fixture(scope="module")
def client(triton_server: TritonServerProcess) -> Iterator[Any]:
    c = httpclient.InferenceServerClient(triton_server.url, concurrency=8, network_timeout=60)
    try:
        yield c
    finally:
        c.close()


def _serve(
    client: Any, repo: ExportedModelRepo, spec: ModelSpec, artifacts: list[Path], prefix: str
) -> str:
    name = repo.unique_name(prefix)
    for version, artifact in enumerate(artifacts, start=1):
        export_version(spec, artifact, repo.path, name, version)
    client.load_model(name)
    return name


@pytest.fixture(scope="module")
def onnx_model(
    client: Any, exported_model_repo: ExportedModelRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    artifact = export_onnx(classifier(seed=11), tmp_path_factory.mktemp("onnx") / "c.onnx")
    spec = classifier_spec()
    name = _serve(client, exported_model_repo, spec, [artifact], "onnx")
    yield Served(name, spec, artifact)
    client.unload_model(name)


@pytest.fixture(scope="module")
def volume_models(
    client: Any, exported_model_repo: ExportedModelRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, list[TinyVolumeNet]]]:
    folder = tmp_path_factory.mktemp("pt2")
    nets = [volume_net(seed=12), volume_net(seed=13)]
    artifacts = [export_pt2(net, folder / f"v{i}.pt2") for i, net in enumerate(nets)]
    name = _serve(client, exported_model_repo, volume_spec(), artifacts, "ct")
    yield name, nets
    client.unload_model(name)


def _infer(client: Any, name: str, spec: ModelSpec, x: Array, version: int = 1) -> dict[str, Array]:
    assert spec.input is not None
    tensor = httpclient.InferInput(spec.input.name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    wanted = [httpclient.InferRequestedOutput(o.tensor) for o in spec.outputs]
    result = client.infer(name, [tensor], model_version=str(version), outputs=wanted)
    return {o.tensor: result.as_numpy(o.tensor) for o in spec.outputs}


def _max_diff(got: dict[str, Array], want: dict[str, Array]) -> float:
    assert list(got) == list(want)
    for key in want:
        assert got[key].shape == want[key].shape, key
        assert got[key].dtype == np.float32, key
    return max(float(np.abs(got[k] - want[k]).max()) for k in want)


def _greys(sizes: list[tuple[int, ...]], seed: int) -> list[Array]:
    rng = np.random.default_rng(seed)
    return [rng.random(size).astype(np.float32) for size in sizes]


def test_onnx_model_equals_onnxruntime(onnx_model: Served, client: Any) -> None:
    import onnxruntime as ort

    x = prepare(onnx_model.spec, _greys([(120, 100), (96, 96), (300, 240), (64, 80)], seed=1))
    assert x.shape == (4, 1, 96, 96)
    session = ort.InferenceSession(str(onnx_model.artifact), providers=["CPUExecutionProvider"])
    logits, features = session.run(["logits", "features"], {"pixels": x})
    diff = _max_diff(
        _infer(client, onnx_model.name, onnx_model.spec, x),
        {"logits": logits, "features": features},
    )
    print(f"onnx: max |triton - onnxruntime| = {diff:.3g}")
    assert diff <= ATOL


def test_concurrent_requests_get_their_own_rows(onnx_model: Served, client: Any) -> None:
    """Requests that Triton batches into one forward pass are answered with their own slices."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_model.artifact), providers=["CPUExecutionProvider"])
    batches = [
        prepare(onnx_model.spec, _greys([(100, 90)] * n, seed=10 + n)) for n in (1, 2, 1, 3, 1)
    ]
    pending = []
    for x in batches:
        tensor = httpclient.InferInput("pixels", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        pending.append(client.async_infer(onnx_model.name, [tensor], model_version="1"))
    for x, request in zip(batches, pending, strict=True):
        result = request.get_result()
        logits, features = session.run(["logits", "features"], {"pixels": x})
        got = {"logits": result.as_numpy("logits"), "features": result.as_numpy("features")}
        assert _max_diff(got, {"logits": logits, "features": features}) <= ATOL


def _eager(net: TinyVolumeNet, x: Array) -> dict[str, Array]:
    with torch.inference_mode():
        out = net(torch.from_numpy(x))
    return {"scores": out["scores"].numpy(), "embedding": out["embedding"].numpy()}


def test_volume_versions_equal_torch_eager(
    volume_models: tuple[str, list[TinyVolumeNet]], client: Any
) -> None:
    """Two versions under one config, both served; a dynamic depth passes through unresampled."""
    name, nets = volume_models
    spec = volume_spec()
    x = prepare(spec, _greys([(6, 40, 48), (6, 32, 32), (6, 64, 20)], seed=2))
    assert x.shape == (3, 2, 6, 32, 32)
    np.testing.assert_array_equal(x[:, 0], x[:, 1])  # grey replicated to both channels
    diffs = []
    for version, net in enumerate(nets, start=1):
        diffs.append(_max_diff(_infer(client, name, spec, x, version), _eager(net, x)))
    print(f"torch.export 3-D: max |triton - torch eager| per version = {diffs}")
    assert max(diffs) <= ATOL
    v1, v2 = (_infer(client, name, spec, x, v)["scores"] for v in (1, 2))
    assert not np.allclose(v1, v2)  # the versions really are different models


def test_a_failing_request_is_answered_and_the_model_keeps_serving(
    volume_models: tuple[str, list[TinyVolumeNet]], client: Any
) -> None:
    """Depth 20 passes Triton's dims (-1) but not the archive's range (4-16): the request gets
    the error, and the stub answers the next request."""
    name, nets = volume_models
    spec = volume_spec()
    too_deep = np.zeros((1, 2, 20, 32, 32), dtype=np.float32)
    with pytest.raises(InferenceServerException, match="failed"):
        _infer(client, name, spec, too_deep)
    x = prepare(spec, _greys([(8, 32, 32)], seed=3))
    assert _max_diff(_infer(client, name, spec, x), _eager(nets[0], x)) <= ATOL
