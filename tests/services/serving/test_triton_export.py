"""pipelines.export_triton: repository layout, config contents, immutable versions.

(Lives here because it is the serving side of the export; the live-server behaviour of the
exported model is in test_client.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pipelines.contract import (
    EMBEDDING_DIM,
    FINDINGS,
    IMAGE_SIZE,
    TRITON_INPUT,
    TRITON_MAX_BATCH,
    TRITON_OUTPUT_EMBEDDING,
    TRITON_OUTPUT_PROBS,
)
from pipelines.errors import ExportConflictError as ConflictError
from pipelines.errors import InvalidExportError as ValidationFailedError
from pipelines.export_triton import export_model, render_config, weights_digest
from pipelines.model import RadiographNet, load_exported
from tests.fixtures.triton import make_test_model


@pytest.fixture(scope="module")
def model() -> RadiographNet:
    return make_test_model(seed=21)


def test_layout_and_archive_equal_the_module(model: RadiographNet, tmp_path: Path) -> None:
    version_dir = export_model(model, tmp_path, "cxr", 1)
    assert version_dir == tmp_path / "cxr" / "1"
    assert sorted(p.name for p in (tmp_path / "cxr").iterdir()) == ["1", "config.pbtxt"]
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "model.pt2",
        "model.py",
        "weights.sha256",
    ]
    x = torch.randn(5, 1, IMAGE_SIZE, IMAGE_SIZE)
    with torch.inference_mode():
        expected = model(x)
        got = load_exported(version_dir / "model.pt2")(x)
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


def test_config_names_dims_from_the_contract() -> None:
    text = render_config("cxr", torch_threads=2)
    assert 'name: "cxr"' in text
    assert 'backend: "python"' in text
    assert f"max_batch_size: {TRITON_MAX_BATCH}" in text
    assert "version_policy: { all { } }" in text
    assert (
        f'name: "{TRITON_INPUT}" data_type: TYPE_FP32 dims: [ 1, {IMAGE_SIZE}, {IMAGE_SIZE} ]'
        in text
    )
    assert f'name: "{TRITON_OUTPUT_PROBS}" data_type: TYPE_FP32 dims: [ {len(FINDINGS)} ]' in text
    assert (
        f'name: "{TRITON_OUTPUT_EMBEDDING}" data_type: TYPE_FP32 dims: [ {EMBEDDING_DIM} ]' in text
    )
    assert "max_queue_delay_microseconds: 2000" in text
    assert "kind: KIND_CPU" in text
    assert 'key: "TORCH_NUM_THREADS" value: { string_value: "2" }' in text
    # The generic model reads the built-in as any torch.export archive.
    assert 'key: "RADWATCH_RUNTIME" value: { string_value: "torch-export" }' in text
    assert 'key: "RADWATCH_ARTIFACT" value: { string_value: "model.pt2" }' in text


def test_second_version_keeps_the_first(model: RadiographNet, tmp_path: Path) -> None:
    export_model(model, tmp_path, "cxr", 1)
    first = (tmp_path / "cxr" / "1" / "model.pt2").read_bytes()
    export_model(make_test_model(seed=22), tmp_path, "cxr", 2)
    assert (tmp_path / "cxr" / "1" / "model.pt2").read_bytes() == first
    assert (tmp_path / "cxr" / "2" / "model.pt2").is_file()
    assert not [p for p in (tmp_path / "cxr").iterdir() if p.name.startswith(".")]


def test_existing_version_is_never_overwritten(model: RadiographNet, tmp_path: Path) -> None:
    export_model(model, tmp_path, "cxr", 1)
    before = (tmp_path / "cxr" / "1" / "model.pt2").stat().st_mtime_ns
    with pytest.raises(ConflictError, match="different weights"):
        export_model(make_test_model(seed=23), tmp_path, "cxr", 1)
    assert (tmp_path / "cxr" / "1" / "model.pt2").stat().st_mtime_ns == before


def test_reexporting_the_same_weights_is_a_no_op(model: RadiographNet, tmp_path: Path) -> None:
    # A rollback redeploys an old version: same weights, same number, nothing to do.
    first = export_model(model, tmp_path, "cxr", 1)
    before = (first / "model.pt2").stat().st_mtime_ns
    reloaded = make_test_model(seed=21)  # same seed -> same weights, a different object
    assert weights_digest(reloaded) == weights_digest(model)
    assert export_model(reloaded, tmp_path, "cxr", 1) == first
    assert (first / "model.pt2").stat().st_mtime_ns == before


@pytest.mark.parametrize(
    ("name", "version"), [("bad/name", 1), ("", 1), ("-x", 1), ("cxr", 0), ("cxr", True)]
)
def test_bad_name_or_version(model: RadiographNet, tmp_path: Path, name: str, version: int) -> None:
    with pytest.raises(ValidationFailedError):
        export_model(model, tmp_path, name, version)
    assert list(tmp_path.iterdir()) == []


def test_model_off_contract_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValidationFailedError, match="findings"):
        export_model(RadiographNet(n_findings=3), tmp_path, "cxr", 1)
