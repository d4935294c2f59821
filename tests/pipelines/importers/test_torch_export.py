"""``.pt2`` import: real torch.export archives accepted (tuple, dict or bare-tensor outputs) and
served as a tuple in spec order that equals the archive's own runtime; every refusal named."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipelines.export_triton import file_digest
from pipelines.importers import import_model
from pipelines.spec import parse_spec
from tests.fixtures import foreign_models as fm

Refused = Callable[..., str]
Reproduces = Callable[..., None]


def _spec(base: dict[str, Any], **changes: Any) -> Any:
    return parse_spec({**base, **changes})


def _out_spec_type(path: Path) -> type:
    out_spec = torch.export.load(str(path)).call_spec.out_spec
    assert out_spec is not None
    return out_spec.type  # type: ignore[no-any-return]


def test_tuple_archive_is_served_verbatim(
    pt2_classifier: fm.ForeignModel,
    tmp_path: Path,
    reproduces: Reproduces,
) -> None:
    imported = import_model(pt2_classifier.path, parse_spec(pt2_classifier.spec), tmp_path)

    assert imported.artifact == tmp_path / "model.pt2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt2"]
    assert imported.source_format == "torch-export"
    assert (
        file_digest(imported.artifact) == imported.source_sha256 == file_digest(pt2_classifier.path)
    )
    assert imported.card["findings"] == list(fm.CLASSIFIER_FINDINGS)
    reproduces(imported)


def test_dict_archive_is_re_exported_as_a_spec_ordered_tuple(
    tmp_path: Path, reproduces: Reproduces
) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", outputs="dict")
    assert _out_spec_type(model.path) is dict

    imported = import_model(model.path, parse_spec(model.spec), tmp_path / "work")

    assert _out_spec_type(imported.artifact) is tuple
    assert file_digest(imported.artifact) != imported.source_sha256
    reproduces(imported)
    # the re-exported batch range is the spec's, 1..max_batch_size
    module = torch.export.load(str(imported.artifact)).module()
    assert module(torch.zeros(fm.MAX_BATCH, *fm.CLASSIFIER_SHAPE))[0].shape == (fm.MAX_BATCH, 5)


def test_embedding_only_encoder_returning_a_tensor(tmp_path: Path, reproduces: Reproduces) -> None:
    model = fm.build_embedding_encoder(tmp_path / "src", fmt="pt2")
    imported = import_model(model.path, parse_spec(model.spec), tmp_path / "work")

    assert _out_spec_type(imported.artifact) is tuple
    assert imported.spec.findings is None
    reproduces(imported)


def test_refuses_without_a_spec(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    refused(lambda: import_model(pt2_classifier.path, None, tmp_path), tmp_path, "--spec")


def test_refuses_a_spec_for_another_runtime(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(pt2_classifier.spec, runtime="onnx")
    refused(
        lambda: import_model(pt2_classifier.path, spec, tmp_path),
        tmp_path,
        'runtime to "torch-export"',
    )


def test_refuses_more_than_one_input(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_two_inputs(tmp_path / "src")
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "takes 2 inputs",
        "one tensor argument",
    )


def test_refuses_another_input_shape(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(pt2_classifier.spec, input={"name": "pixels", "shape": [1, 256, 256]})
    refused(
        lambda: import_model(pt2_classifier.path, spec, tmp_path),
        tmp_path,
        "[batch, 1, 256, 256]",
        "make input.shape match",
    )


def test_refuses_another_rank(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(
        pt2_classifier.spec, dimensionality=3, input={"name": "pixels", "shape": [3, 4, 256, 256]}
    )
    refused(lambda: import_model(pt2_classifier.path, spec, tmp_path), tmp_path, "rank 4")


def test_refuses_an_output_count_the_program_does_not_have(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    spec = _spec(
        pt2_classifier.spec, outputs=pt2_classifier.spec["outputs"][:1], retraining={"kind": "none"}
    )
    refused(
        lambda: import_model(pt2_classifier.path, spec, tmp_path),
        tmp_path,
        "returns 2 output(s)",
        "declares 1",
    )


def test_refuses_output_widths_the_program_does_not_have(
    pt2_classifier: fm.ForeignModel, tmp_path: Path, refused: Refused
) -> None:
    outputs = [
        pt2_classifier.spec["outputs"][0],
        {"kind": "embedding", "tensor": "embedding", "width": 64},
    ]
    spec = _spec(pt2_classifier.spec, outputs=outputs)
    refused(
        lambda: import_model(pt2_classifier.path, spec, tmp_path),
        tmp_path,
        "shape [2, 256]",
        "embedding width 64",
    )


def test_refuses_a_dict_without_the_spec_tensor(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", outputs="dict")
    findings = {**model.spec["outputs"][0], "tensor": "scores"}
    spec = _spec(model.spec, outputs=[findings, model.spec["outputs"][1]])
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, spec, work),
        work,
        "no ['scores']",
        "key its outputs by the spec's tensor names",
    )


def test_refuses_a_fixed_batch(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", fixed_batch=True)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "batch dimension is fixed at 2",
        'Dim("batch", min=1, max=32)',
    )


def test_refuses_a_batch_range_below_max_batch_size(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", max_batch=8)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "batch sizes 1..8",
        "1..32",
        "lower spec.max_batch_size",
    )


def test_refuses_undeclared_dynamic_dims(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", dynamic_hw=True)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, parse_spec(model.spec), work),
        work,
        "undeclared dynamic dims",
        "axis 2, axis 3",
    )


def _dynamic_hw_spec(base: dict[str, Any], largest: int) -> Any:
    dynamic = {"min": 64, "max": largest}
    shape = [3, "height", "width"]
    spec_input = {
        "name": "pixels",
        "shape": shape,
        "dynamic": {"height": dynamic, "width": dynamic},
    }
    return _spec(base, input=spec_input)


def test_declared_dynamic_spatial_dims_within_the_programs_range(
    tmp_path: Path, reproduces: Reproduces
) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", dynamic_hw=True)
    imported = import_model(model.path, _dynamic_hw_spec(model.spec, 512), tmp_path / "work")

    assert file_digest(imported.artifact) == imported.source_sha256
    assert imported.spec.input is not None
    assert imported.spec.input.shape == (3, "height", "width")
    reproduces(imported, shape=[3, 128, 192])


def test_refuses_a_dynamic_range_wider_than_the_programs(tmp_path: Path, refused: Refused) -> None:
    model = fm.build_pt2_classifier(tmp_path / "src", dynamic_hw=True)
    work = tmp_path / "work"
    refused(
        lambda: import_model(model.path, _dynamic_hw_spec(model.spec, 1024), work),
        work,
        "'height' sizes 64..512",
        "64..1024",
        "narrow input.dynamic",
    )


def test_refuses_a_file_that_is_not_an_archive(tmp_path: Path, refused: Refused) -> None:
    path = tmp_path / "model.pt2"
    path.write_bytes(b"PK\x03\x04 truncated")
    work = tmp_path / "work"
    spec = parse_spec(fm.encoder_spec("torch-export"))
    refused(lambda: import_model(path, spec, work), work, "torch.export.save")
