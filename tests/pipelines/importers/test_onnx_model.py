"""ONNX import: real torch.onnx exports accepted and served identically; every refusal named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import onnx
import pytest
from onnx import TensorProto, helper

from pipelines.export_triton import file_digest
from pipelines.importers import import_model
from pipelines.spec import parse_spec
from tests.fixtures import foreign_models as fm

Refused = Callable[..., str]
Reproduces = Callable[..., None]


def _spec(base: dict[str, Any], **changes: Any) -> Any:
    return parse_spec({**base, **changes})


def _findings_output(count: int) -> dict[str, Any]:
    names = [f"finding_{i}" for i in range(count)]
    return {"kind": "findings", "tensor": "logits", "findings": [{"name": n} for n in names]}


def test_classifier_is_served_as_its_own_runtime_runs_it(
    onnx_classifier: fm.ForeignModel,
    tmp_path: Path,
    reproduces: Reproduces,
) -> None:
    imported = import_model(onnx_classifier.path, parse_spec(onnx_classifier.spec), tmp_path)

    assert imported.artifact == tmp_path / "model.onnx"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    assert imported.source_format == "onnx"
    assert imported.source_sha256 == file_digest(onnx_classifier.path)
    assert file_digest(imported.artifact) == imported.source_sha256  # inline weights: verbatim
    assert imported.spec == parse_spec(onnx_classifier.spec)
    assert imported.card["findings"] == list(fm.CLASSIFIER_FINDINGS)
    assert imported.card["input"]["shape"] == list(fm.CLASSIFIER_SHAPE)
    assert imported.card["source_sha256"] == imported.source_sha256
    assert imported.card["description"].startswith("TwoHeadNet")
    reproduces(imported)


def test_embedding_only_encoder(tmp_path: Path, reproduces: Reproduces) -> None:
    model = fm.build_embedding_encoder(tmp_path / "src", fmt="onnx")
    imported = import_model(model.path, parse_spec(model.spec), tmp_path / "work")

    assert imported.spec.findings is None
    assert imported.card["embedding_width"] == fm.ENCODER_WIDTH
    reproduces(imported)


def test_external_data_is_rewritten_as_one_file(tmp_path: Path, reproduces: Reproduces) -> None:
    model = fm.build_onnx_classifier(tmp_path / "src", external_data=True)
    assert (model.path.parent / f"{model.path.name}.data").is_file()

    imported = import_model(model.path, parse_spec(model.spec), tmp_path / "work")

    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["model.onnx"]
    served = onnx.load(str(imported.artifact), load_external_data=False)
    assert not any(t.data_location == TensorProto.EXTERNAL for t in served.graph.initializer)
    reproduces(imported)


def test_declared_dynamic_spatial_dims_are_accepted(tmp_path: Path, reproduces: Reproduces) -> None:
    model = fm.build_onnx_classifier(tmp_path / "src", dynamic_hw=True)
    spec = dict(model.spec)
    spec["input"] = {
        "name": "pixels",
        "shape": [3, "height", "width"],
        "dynamic": {"height": {"min": 64, "max": 512}, "width": {"min": 64, "max": 512}},
    }
    imported = import_model(model.path, parse_spec(spec), tmp_path / "work")

    assert imported.spec.input is not None
    assert imported.spec.input.shape == (3, "height", "width")
    reproduces(imported, shape=[3, 128, 192])


def test_refuses_without_a_spec(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    refused(lambda: import_model(onnx_classifier.path, None, tmp_path), tmp_path, "--spec")


def test_refuses_a_spec_for_another_runtime(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(onnx_classifier.spec, runtime="torch-export")
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path), tmp_path, 'runtime to "onnx"'
    )


def test_refuses_another_input_name(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(onnx_classifier.spec, input={"name": "image", "shape": [3, 256, 256]})
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "set input.name to 'pixels'",
    )


def test_refuses_another_rank(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(
        onnx_classifier.spec, dimensionality=3, input={"name": "pixels", "shape": [3, 8, 256, 256]}
    )
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "rank 4",
        "rank 5",
        "input.shape",
    )


def test_refuses_another_input_shape(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(onnx_classifier.spec, input={"name": "pixels", "shape": [3, 224, 224]})
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "[batch, 3, 256, 256]",
        "make input.shape match",
    )


def test_refuses_a_fixed_batch(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_onnx_classifier(tmp_path / "src", fixed_batch=True)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "batch dimension is fixed at 2",
        "dynamic batch",
    )


def test_refuses_undeclared_dynamic_dims(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_onnx_classifier(tmp_path / "src", dynamic_hw=True)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "undeclared dynamic dims",
        "axis 2",
        "axis 3",
        "input.dynamic",
    )


def test_refuses_a_dynamic_dim_the_graph_fixes(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(
        onnx_classifier.spec,
        input={"name": "pixels", "shape": [3, "h", 256], "dynamic": {"h": {"min": 64, "max": 512}}},
    )
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "fixes it at 256",
        "declare 256 in input.shape",
    )


def test_refuses_a_missing_output_tensor(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    outputs = [
        onnx_classifier.spec["outputs"][0],
        {"kind": "embedding", "tensor": "features", "width": 256},
    ]
    spec = _spec(onnx_classifier.spec, outputs=outputs)
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "no output 'features'",
        "['embedding', 'logits']",
    )


def test_refuses_a_findings_count_the_graph_does_not_have(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    outputs = [_findings_output(4), onnx_classifier.spec["outputs"][1]]
    spec = _spec(onnx_classifier.spec, outputs=outputs)
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "'logits' has width 5",
        "4 findings",
    )


def test_refuses_an_embedding_width_the_graph_does_not_have(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    outputs = [
        onnx_classifier.spec["outputs"][0],
        {"kind": "embedding", "tensor": "embedding", "width": 128},
    ]
    spec = _spec(onnx_classifier.spec, outputs=outputs)
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        "width 256",
        "embedding width 128",
    )


def test_refuses_an_opset_newer_than_onnxruntime(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    future = fm.with_opset(onnx_classifier.path, tmp_path / "future.onnx", 99)
    work = tmp_path / "work"
    refused(
        lambda: import_model(future, parse_spec(onnx_classifier.spec), work),
        work,
        "opset 99",
        "newer than onnxruntime",
        "opset_version<=",
    )


def test_refuses_an_operator_onnxruntime_cannot_run(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_onnx_custom_op(tmp_path / "src")
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "'Frobnicate'",
        "'com.example.vendor'",
    )


def test_refuses_a_graph_onnx_checker_rejects(tmp_path: Path, refused: Refused) -> None:
    node = helper.make_node("Relu", ["not_an_input"], ["features"])
    graph = helper.make_graph(
        [node],
        "broken",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 160, 160])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 64])],
    )
    path = tmp_path / "broken.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    work = tmp_path / "work"
    refused(
        lambda: import_model(path, parse_spec(fm.encoder_spec("onnx")), work),
        work,
        "onnx.checker rejects the model",
    )


def test_refuses_a_file_that_is_not_onnx(tmp_path: Path, refused: Refused) -> None:
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"\x00not a protobuf at all\xff" * 10)
    work = tmp_path / "work"
    refused(
        lambda: import_model(path, parse_spec(fm.encoder_spec("onnx")), work),
        work,
        "is not an ONNX model",
    )


@pytest.mark.parametrize("kind", ["report", "mask"])
def test_refuses_outputs_radwatch_cannot_serve(
    onnx_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused, kind: str
) -> None:
    extra: dict[str, Any] = {"kind": kind, "tensor": "embedding"}
    if kind == "mask":
        extra["labels"] = ["lung"]
    spec = _spec(
        onnx_classifier.spec,
        outputs=[onnx_classifier.spec["outputs"][0], extra],
        retraining={"kind": "none"},
    )
    refused(
        lambda: import_model(onnx_classifier.path, spec, tmp_path),
        tmp_path,
        f"kind {kind!r}",
        "findings and embedding outputs only",
    )
