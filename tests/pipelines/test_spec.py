"""The model spec: valid specs round-trip canonically, invalid ones name the field to fix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipelines.model import ModelConfig, builtin_spec
from pipelines.spec import SpecError, load_spec_file, parse_spec


def _spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "runtime": "onnx",
        "input": {"name": "pixels", "shape": [3, 256, 256]},
        "outputs": [
            {"kind": "findings", "tensor": "probs", "findings": [{"name": "edema"}]},
            {"kind": "embedding", "tensor": "features", "width": 256},
        ],
    }
    spec.update(overrides)
    return spec


def test_the_builtin_model_is_a_spec_like_any_other() -> None:
    spec = builtin_spec()
    assert spec.input is not None
    assert spec.input.shape == (1, 128, 128)
    assert spec.findings is not None
    assert spec.findings.names == ("effusion", "nodule", "cardiomegaly", "pneumothorax")
    assert spec.embedding is not None
    assert spec.embedding.width == ModelConfig().embedding_dim
    assert spec.retraining.kind == "probe"
    assert parse_spec(spec.to_json()) == spec
    assert parse_spec(spec.to_json()).sha256() == spec.sha256()


def test_yaml_and_json_give_the_same_spec(tmp_path: Path) -> None:
    (tmp_path / "s.json").write_text(json.dumps(_spec()))
    (tmp_path / "s.yaml").write_text(
        "runtime: onnx\ninput: {name: pixels, shape: [3, 256, 256]}\noutputs:\n"
        "  - {kind: findings, tensor: probs, findings: [{name: edema}]}\n"
        "  - {kind: embedding, tensor: features, width: 256}\n"
    )
    assert load_spec_file(tmp_path / "s.json") == load_spec_file(tmp_path / "s.yaml")


def test_a_3d_multichannel_input_with_declared_dynamic_depth_is_admitted() -> None:
    spec = parse_spec(
        _spec(
            modality="ct",
            dimensionality=3,
            input={
                "name": "vol",
                "shape": [2, "depth", 96, 96],
                "dynamic": {"depth": {"min": 16, "max": 64}},
            },
        )
    )
    assert spec.input is not None
    assert spec.input.spatial == ("depth", 96, 96)


@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"input": {"name": "x", "shape": [1, "h", 64]}}, "input: dynamic dimension(s) ['h']"),
        ({"input": {"name": "x", "shape": [1, 64, 64, 64]}}, "dimensionality is 2"),
        ({"outputs": []}, "outputs:"),
        (
            {
                "outputs": [
                    {"kind": "findings", "tensor": "p", "findings": [{"name": "a"}, {"name": "a"}]}
                ]
            },
            "finding names must be unique",
        ),
        ({"retraining": {"kind": "external"}}, "needs retraining.entry_point"),
        (
            {"retraining": {"kind": "external", "entry_point": "./trainer"}},
            "needs retraining.evaluation_set",
        ),
        (
            {
                "outputs": [{"kind": "findings", "tensor": "p", "findings": [{"name": "a"}]}],
                "retraining": {"kind": "probe"},
            },
            "needs an 'embedding' output",
        ),
        ({"monitors": ["performance", "made_up"]}, "monitors."),
        ({"runtime": "tensorflow"}, "runtime:"),
        ({"colour": "blue"}, "colour: Extra inputs are not permitted"),
        ({"schema_version": 9}, "schema_version 9 is not supported"),
    ],
)
def test_a_bad_spec_names_what_to_fix(overrides: dict[str, Any], names: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(_spec(**overrides))
    assert names in str(err.value)


def test_a_monitor_needs_the_output_it_reads() -> None:
    spec = _spec(
        outputs=[{"kind": "embedding", "tensor": "f", "width": 8}], monitors=["performance"]
    )
    with pytest.raises(SpecError, match="need outputs this model does not have"):
        parse_spec(spec)


def test_a_probe_names_its_encoder_and_serves_through_it() -> None:
    probe = {
        "runtime": "probe",
        "encoder_runtime": "onnx",
        "input": {"name": "pixels", "shape": [1, 160, 160]},
        "encoder": {"name": "enc", "version": 1, "sha256": "a" * 64},
        "outputs": [
            {"kind": "findings", "tensor": "probe", "findings": [{"name": "edema"}]},
            {"kind": "embedding", "tensor": "features", "width": 64},
        ],
        "retraining": {"kind": "probe"},
    }
    spec = parse_spec(probe)
    assert "performance" in spec.enabled_monitors()
    view = spec.encoder_view()
    assert view.runtime == "onnx"
    assert [o.tensor for o in view.outputs] == ["features"]
    assert view.input == spec.input
    with pytest.raises(SpecError, match="names its encoder"):
        parse_spec({**probe, "encoder": None})
    with pytest.raises(SpecError, match="encoder_runtime"):
        parse_spec({**probe, "encoder_runtime": None})
    with pytest.raises(SpecError, match="only a probe"):
        parse_spec({**probe, "runtime": "onnx"})


def test_text_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(SpecError, match="must be a mapping"):
        parse_spec("- a\n- b\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        parse_spec("{a: [")
