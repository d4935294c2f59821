"""export_version(spec, artifact, ...): configs from the spec, both flavours, every refusal, and
the generic Triton model's runners outside Triton.

Configs are parsed with Triton's own ``ModelConfig`` protobuf (from tritonclient), so a config
that Triton could not read fails here even for the flavour no local server can load.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from pipelines import export_triton
from pipelines.errors import ExportConflictError, InvalidExportError
from pipelines.export_triton import export_version, render_spec_config
from pipelines.model import builtin_spec
from pipelines.spec import parse_spec
from pipelines.triton_model import model as triton_model
from tests.fixtures.serving_models import (
    classifier,
    classifier_spec,
    export_onnx,
    export_pt2,
    handmade_onnx,
    volume_net,
    volume_spec,
)


def _parse(config: str) -> Any:
    return text_format.Parse(config, model_config_pb2.ModelConfig())


def _fake_pt2(path: Path, payload: bytes = b"weights") -> Path:
    """A zip that passes the exporter's format check (enough for config and layout tests)."""
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data", payload)
    return path


@pytest.fixture
def onnx_file(tmp_path: Path) -> Path:
    (tmp_path / "art").mkdir()
    return handmade_onnx(tmp_path / "art" / "m.onnx")


def test_onnx_layout_and_config_from_the_spec(onnx_file: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    version_dir = export_version(classifier_spec(), onnx_file, repo, "mammo", 1, torch_threads=2)
    assert version_dir == repo / "mammo" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "model.onnx",
        "model.py",
        "weights.sha256",
    ]
    assert (version_dir / "model.onnx").read_bytes() == onnx_file.read_bytes()
    digest = hashlib.sha256(onnx_file.read_bytes()).hexdigest()
    assert (version_dir / "weights.sha256").read_text().strip() == digest
    assert (version_dir / "model.py").read_bytes() == export_triton.TEMPLATE.read_bytes()
    cfg = _parse((repo / "mammo" / "config.pbtxt").read_text())
    assert (cfg.name, cfg.backend, cfg.platform, cfg.max_batch_size) == ("mammo", "python", "", 8)
    assert [(t.name, list(t.dims)) for t in cfg.input] == [("pixels", [1, 96, 96])]
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [3]), ("features", [32])]
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {
        "RADWATCH_RUNTIME": "onnx",
        "RADWATCH_ARTIFACT": "model.onnx",
        "TORCH_NUM_THREADS": "2",
    }
    assert cfg.dynamic_batching.max_queue_delay_microseconds == 2000
    assert cfg.version_policy.HasField("all")


def test_dynamic_dims_are_minus_one_and_pt2_is_the_archive(tmp_path: Path) -> None:
    artifact = _fake_pt2(tmp_path / "v.pt2")
    version_dir = export_version(volume_spec(), artifact, tmp_path / "repo", "ct", 3)
    assert sorted(p.name for p in version_dir.iterdir()) == [
        "model.pt2",
        "model.py",
        "weights.sha256",
    ]
    cfg = _parse((tmp_path / "repo" / "ct" / "config.pbtxt").read_text())
    assert list(cfg.input[0].dims) == [2, -1, 32, 32]
    assert cfg.parameters["RADWATCH_RUNTIME"].string_value == "torch-export"
    assert cfg.parameters["RADWATCH_ARTIFACT"].string_value == "model.pt2"


def test_onnxruntime_flavour_config(onnx_file: Path, tmp_path: Path) -> None:
    # Only the text is checked: the tritonserver bundled with nvidia-pytriton has only the
    # Python backend, so no local server can load this flavour (a stock NVIDIA image can).
    repo = tmp_path / "repo"
    version_dir = export_version(
        classifier_spec(), onnx_file, repo, "mammo", 1, flavour="onnxruntime", torch_threads=4
    )
    assert sorted(p.name for p in version_dir.iterdir()) == ["model.onnx", "weights.sha256"]
    text = (repo / "mammo" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text
    assert "backend:" not in text
    cfg = _parse(text)
    assert cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 8
    assert [(t.name, list(t.dims)) for t in cfg.output] == [("logits", [3]), ("features", [32])]
    assert {k: v.string_value for k, v in cfg.parameters.items()} == {
        "intra_op_thread_count": "4",
        "inter_op_thread_count": "1",
    }
    assert cfg.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU


def test_builtin_config_is_the_spec_config() -> None:
    assert export_triton.render_config("cxr") == render_spec_config(builtin_spec(), "cxr")
    cfg = _parse(export_triton.render_config("cxr"))
    assert cfg.parameters["RADWATCH_RUNTIME"].string_value == "torch-export"


_PROBE = {
    "runtime": "probe",
    "encoder_runtime": "onnx",
    "input": {"name": "pixels", "shape": [1, 96, 96]},
    "encoder": {"name": "enc", "version": 1, "sha256": "0" * 64},
    "outputs": [
        {"kind": "findings", "tensor": "y", "findings": [{"name": "a"}]},
        {"kind": "embedding", "tensor": "features", "width": 32},
    ],
}


def test_a_probe_is_not_exported(onnx_file: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidExportError, match="gateway applies it"):
        export_version(parse_spec(_PROBE), onnx_file, tmp_path, "probe", 1)
    assert list(tmp_path.iterdir()) == [tmp_path / "art"]


def test_onnxruntime_flavour_is_for_onnx_only(tmp_path: Path) -> None:
    with pytest.raises(InvalidExportError, match="ONNX models only"):
        export_version(
            volume_spec(), _fake_pt2(tmp_path / "v.pt2"), tmp_path, "ct", 1, flavour="onnxruntime"
        )


def test_unserved_output_kinds_are_refused(onnx_file: Path, tmp_path: Path) -> None:
    spec = classifier_spec(
        outputs=[
            {"kind": "report", "tensor": "logits"},
            {"kind": "embedding", "tensor": "features", "width": 32},
        ]
    )
    with pytest.raises(InvalidExportError, match="'report' output"):
        export_version(spec, onnx_file, tmp_path / "repo", "mammo", 1)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: handmade_onnx(p, input_name="x"), r"no input 'pixels' \(it has \['x'\]\)"),
        (lambda p: handmade_onnx(p, outputs=("logits",)), r"no output\(s\) \['features'\]"),
        (lambda p: handmade_onnx(p, input_shape=(8, 1, 96, 96)), "dynamic batch axis up to 8"),
        (
            lambda p: handmade_onnx(p, input_shape=("N", 1, 64, 96)),
            r"not \[batch, \*\[1, 96, 96\]\]",
        ),
        (lambda p: handmade_onnx(p, input_shape=("N", 96, 96)), "input shape"),
        (lambda p: handmade_onnx(p, external_data=True), "external data"),
        (lambda p: p.write_bytes(b"not a model") and p, "is not an ONNX model"),
    ],
)
def test_onnx_artifacts_that_do_not_match_are_refused(
    tmp_path: Path, make: Any, match: str
) -> None:
    artifact = make(tmp_path / "m.onnx")
    with pytest.raises(InvalidExportError, match=match):
        export_version(classifier_spec(), artifact, tmp_path / "repo", "mammo", 1)
    assert not (tmp_path / "repo").exists()


def test_pt2_must_be_an_archive(tmp_path: Path) -> None:
    (tmp_path / "v.pt2").write_bytes(b"pickle?")
    with pytest.raises(InvalidExportError, match=r"not a torch\.export archive"):
        export_version(volume_spec(), tmp_path / "v.pt2", tmp_path / "repo", "ct", 1)
    with pytest.raises(InvalidExportError, match="is not a file"):
        export_version(volume_spec(), tmp_path / "missing.pt2", tmp_path / "repo", "ct", 1)


def test_one_interface_per_model_name(onnx_file: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    export_version(classifier_spec(), onnx_file, repo, "mammo", 1)
    before = (repo / "mammo" / "config.pbtxt").read_text()
    with pytest.raises(ExportConflictError, match="max_batch_size: 8 there, 4 here"):
        export_version(classifier_spec(max_batch_size=4), onnx_file, repo, "mammo", 2)
    with pytest.raises(ExportConflictError, match="engine"):
        export_version(classifier_spec(), onnx_file, repo, "mammo", 2, flavour="onnxruntime")
    narrower = classifier_spec(outputs=[{"kind": "embedding", "tensor": "features", "width": 16}])
    with pytest.raises(ExportConflictError, match="one config serves every version"):
        export_version(narrower, onnx_file, repo, "mammo", 2)
    assert (repo / "mammo" / "config.pbtxt").read_text() == before
    assert sorted(p.name for p in (repo / "mammo").iterdir()) == ["1", "config.pbtxt"]
    # Deployment settings are not the interface: they may change, and are rewritten.
    export_version(
        classifier_spec(), onnx_file, repo, "mammo", 2, torch_threads=3, instance_count=2
    )
    cfg = _parse((repo / "mammo" / "config.pbtxt").read_text())
    assert cfg.parameters["TORCH_NUM_THREADS"].string_value == "3"
    assert cfg.instance_group[0].count == 2


def test_identical_bytes_are_a_no_op_other_bytes_a_conflict(
    onnx_file: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    first = export_version(classifier_spec(), onnx_file, repo, "mammo", 1)
    before = (first / "model.onnx").stat().st_mtime_ns
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(onnx_file.read_bytes())
    assert export_version(classifier_spec(), copy, repo, "mammo", 1) == first
    assert (first / "model.onnx").stat().st_mtime_ns == before
    other = onnx.load(str(onnx_file))
    other.doc_string = "retrained"
    onnx.save(other, str(copy))
    with pytest.raises(ExportConflictError, match="different weights"):
        export_version(classifier_spec(), copy, repo, "mammo", 1)
    assert (first / "model.onnx").read_bytes() == onnx_file.read_bytes()
    assert not [p for p in (repo / "mammo").iterdir() if p.name.startswith(".")]


#: A config written before runtimes were configurable (render_config at commit dd3a453).
_LEGACY = """name: "cxr"
backend: "python"
max_batch_size: 64
version_policy: { all { } }
input [
  { name: "IMAGE" data_type: TYPE_FP32 dims: [ 1, 128, 128 ] }
]
output [
  { name: "PROBS" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "EMBEDDING" data_type: TYPE_FP32 dims: [ 128 ] }
]
dynamic_batching { max_queue_delay_microseconds: 2000 }
instance_group [ { kind: KIND_CPU count: 1 } ]
parameters: { key: "TORCH_NUM_THREADS" value: { string_value: "1" } }
"""


def test_a_legacy_builtin_config_has_the_same_interface(tmp_path: Path) -> None:
    (tmp_path / "cxr").mkdir()
    (tmp_path / "cxr" / "config.pbtxt").write_text(_LEGACY)
    export_version(builtin_spec(), _fake_pt2(tmp_path / "a.pt2"), tmp_path, "cxr", 2)
    # ... and the generic model reads a legacy config as what it was: a model.pt2 archive.
    legacy = {"parameters": {}, "input": [{"name": "IMAGE"}], "output": [{"name": "PROBS"}]}
    assert triton_model._parameter(legacy, triton_model.RUNTIME_PARAMETER, "?") == "?"
    assert (triton_model.DEFAULT_RUNTIME, triton_model.DEFAULT_ARTIFACT) == (
        "torch-export",
        export_triton.ARCHIVE_FILE,
    )


def test_the_generic_model_reads_the_exporter_parameter_names() -> None:
    assert triton_model.RUNTIME_PARAMETER == export_triton.RUNTIME_PARAMETER
    assert triton_model.ARTIFACT_PARAMETER == export_triton.ARTIFACT_PARAMETER
    assert triton_model.THREADS_PARAMETER == export_triton.THREADS_PARAMETER


# --- the generic model's runners, outside Triton, on real exported artifacts ---


def _json_config(spec_config: str) -> dict[str, Any]:
    """The model config as the Python backend hands it to ``initialize`` (JSON of the proto)."""
    from google.protobuf.json_format import MessageToDict

    config: dict[str, Any] = MessageToDict(_parse(spec_config), preserving_proto_field_name=True)
    return config


def test_runners_equal_the_models_own_runtime(tmp_path: Path) -> None:
    import onnxruntime as ort

    net2d, net3d = classifier(seed=3), volume_net(seed=4)
    onnx_dir = export_version(
        classifier_spec(), export_onnx(net2d, tmp_path / "c.onnx"), tmp_path, "c", 1
    )
    pt2_dir = export_version(volume_spec(), export_pt2(net3d, tmp_path / "v.pt2"), tmp_path, "v", 1)
    rng = np.random.default_rng(0)

    x2 = rng.normal(size=(3, 1, 96, 96)).astype(np.float32)
    run2 = triton_model.load_runner(
        _json_config((tmp_path / "c" / "config.pbtxt").read_text()), str(onnx_dir)
    )
    session = ort.InferenceSession(str(tmp_path / "c.onnx"), providers=["CPUExecutionProvider"])
    logits, features = session.run(["logits", "features"], {"pixels": x2})
    got2 = run2(x2)
    assert list(got2) == ["logits", "features"]
    np.testing.assert_allclose(got2["logits"], logits, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got2["features"], features, atol=1e-6, rtol=0)

    x3 = rng.normal(size=(2, 2, 6, 32, 32)).astype(np.float32)
    run3 = triton_model.load_runner(
        _json_config((tmp_path / "v" / "config.pbtxt").read_text()), str(pt2_dir)
    )
    with torch.inference_mode():
        eager = net3d(torch.from_numpy(x3))
    got3 = run3(x3)
    assert list(got3) == ["scores", "embedding"]
    for name in got3:
        np.testing.assert_allclose(got3[name], eager[name].numpy(), atol=1e-6, rtol=0)


def test_results_are_named_by_the_config() -> None:
    t = torch.ones(2, 3)
    assert list(triton_model._by_name((t, t), ["a", "b"])) == ["a", "b"]
    assert list(triton_model._by_name({"b": t, "a": t, "extra": t}, ["a", "b"])) == ["a", "b"]
    with pytest.raises(KeyError, match="not"):
        triton_model._by_name({"a": t}, ["a", "b"])
    with pytest.raises(ValueError, match="returned 1 outputs; the config has 2"):
        triton_model._by_name(t, ["a", "b"])
    with pytest.raises(ValueError, match="RADWATCH_RUNTIME"):
        triton_model.load_runner(
            {"parameters": {"RADWATCH_RUNTIME": {"string_value": "tflite"}}, "output": []}, "/x"
        )
