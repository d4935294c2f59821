"""Import an ONNX model: check it with its own tooling and against the spec, then publish it.

ONNX says what its tensors are called and (mostly) what shapes they have, but not what they
mean, so a spec is required. The checks run in the order a user would fix them: the file is a
model (``onnx.checker``), onnxruntime can run it (an opset newer than this onnxruntime, or an
operator it has no kernel for, fails here and is named), the graph's input and outputs agree with
the spec, and finally zero batches of 2 and 1 give the output shapes the spec declares.

The artifact is the source file byte for byte when its weights are inline. A model saved with
external data (``model.onnx`` + ``model.onnx.data``, torch.onnx's default for large models) is
rewritten as one self-contained file, because Triton serves a single ``model.onnx``.
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
from onnx.external_data_helper import ExternalDataInfo, uses_external_data

from pipelines.export_triton import file_digest
from pipelines.importers.common import (
    ARTIFACT_NAMES,
    PROBE_BATCHES,
    ImportedModel,
    ImportRefusedError,
    brief,
    build_card,
    check_declared_width,
    check_input_dims,
    check_output_arrays,
    example_shape,
    publish,
    require_spec,
    shape_text,
    spec_shape_text,
    zero_batch,
)
from pipelines.spec import ModelSpec

RUNTIME = "onnx"
ARTIFACT = ARTIFACT_NAMES[RUNTIME]
PROVIDERS = ["CPUExecutionProvider"]

#: onnxruntime's own wording when it cannot run an operator or an opset.
_UNREGISTERED = re.compile(r"([\w.]*):(\w+)\((-?\d+)\) is not a registered function/op")
_NO_KERNEL = re.compile(r"Could not find an implementation for (\w+)\((\d+)\)")
_OPSET = re.compile(r"[Oo]pset (\d+)")
_STANDARD_DOMAINS = ("", "ai.onnx")

Runner = Callable[[npt.NDArray[np.float32]], dict[str, npt.NDArray[np.float32]]]


def _load(source: Path) -> tuple[onnx.ModelProto, list[Path]]:
    """The model with its weights in memory, and the external data files it read them from."""
    try:
        shallow = onnx.load(str(source), load_external_data=False)
    except Exception as exc:
        raise ImportRefusedError(
            f"{source.name} is not an ONNX model onnx {onnx.__version__} can read: "
            f"{brief(exc)}; export it with torch.onnx.export or onnx.save_model"
        ) from None
    locations = sorted(
        {ExternalDataInfo(t).location for t in shallow.graph.initializer if uses_external_data(t)}
    )
    files = [source.parent / loc for loc in locations]
    if missing := [f.name for f in files if not f.is_file()]:
        raise ImportRefusedError(
            f"{source.name} keeps its weights in {missing}, which is not next to it; put the "
            "external data files beside the .onnx file"
        )
    if not files:
        return shallow, []
    return onnx.load(str(source)), files


def _check(model: onnx.ModelProto) -> None:
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ImportRefusedError(
            f"onnx.checker rejects the model: {brief(exc)}; fix the graph and export again"
        ) from None


def _max_known_opset() -> int:
    """The newest standard opset onnxruntime has schemas for: what an export may safely use."""
    schemas = ort.capi.onnxruntime_pybind11_state.get_all_operator_schema()
    return int(max(s.since_version for s in schemas if s.domain in _STANDARD_DOMAINS))


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    """An onnxruntime CPU session; its failures are turned into the fix they call for."""
    try:
        return ort.InferenceSession(model.SerializeToString(), providers=PROVIDERS)
    except Exception as exc:
        text = str(exc)
        where = f"onnxruntime {ort.__version__}"
        if m := _UNREGISTERED.search(text):
            domain = m.group(1) or "ai.onnx"
            raise ImportRefusedError(
                f"{where} has no operator {m.group(2)!r} in domain {domain!r}; re-export "
                "without custom operators (or with ones onnxruntime implements)"
            ) from None
        if m := _NO_KERNEL.search(text):
            raise ImportRefusedError(
                f"{where} cannot run operator {m.group(1)!r} (version {m.group(2)}) on CPU; "
                "re-export with an older opset or without that operator"
            ) from None
        if (m := _OPSET.search(text)) and "opset" in text.lower():
            opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
            raise ImportRefusedError(
                f"the model's opset {m.group(1)} (opset_import {opsets}) is newer than {where} "
                f"supports; re-export with torch.onnx.export(..., opset_version<="
                f"{_max_known_opset()})"
            ) from None
        raise ImportRefusedError(f"{where} cannot load the model: {brief(exc)}") from None


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Static sizes as ints, symbolic ones by name, unknown ones as None."""
    shape = value.type.tensor_type.shape
    out: list[int | str | None] = []
    for d in shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _check_input(model: onnx.ModelProto, spec: ModelSpec) -> None:
    assert spec.input is not None
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        raise ImportRefusedError(
            f"the graph has {len(inputs)} inputs ({[i.name for i in inputs]}); radwatch serves "
            "one image input: export a model with a single input tensor"
        )
    graph_input = inputs[0]
    if graph_input.name != spec.input.name:
        raise ImportRefusedError(
            f"the graph's input is called {graph_input.name!r} but the spec's input.name is "
            f"{spec.input.name!r}; set input.name to {graph_input.name!r}"
        )
    if graph_input.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        elem = onnx.TensorProto.DataType.Name(graph_input.type.tensor_type.elem_type)
        raise ImportRefusedError(
            f"the graph's input {graph_input.name!r} is {elem}; radwatch sends float32: export "
            "with a float32 input"
        )
    dims = _dims(graph_input)
    want = ["batch", *spec.input.shape]
    if len(dims) != len(want):
        raise ImportRefusedError(
            f"the graph's input has shape {shape_text(dims)} (rank {len(dims)}) but the spec "
            f"declares {spec_shape_text(spec)} (rank {len(want)}); make input.shape "
            "match the model"
        )
    if isinstance(dims[0], int):
        raise ImportRefusedError(
            f"the graph's batch dimension is fixed at {dims[0]}; export with a dynamic batch "
            "axis (torch.onnx.export(..., dynamic_shapes={'x': {0: Dim('batch')}}))"
        )
    check_input_dims(dims, spec, what="graph", shown=dims)


def _check_outputs(model: onnx.ModelProto, spec: ModelSpec) -> None:
    graph_outputs = {o.name: o for o in model.graph.output}
    for output in spec.outputs:
        if output.tensor not in graph_outputs:
            raise ImportRefusedError(
                f"the graph has no output {output.tensor!r} (its outputs are "
                f"{sorted(graph_outputs)}); name the spec's output tensors as the graph does"
            )
        dims = _dims(graph_outputs[output.tensor])
        if dims and len(dims) != 2:
            raise ImportRefusedError(
                f"the graph's output {output.tensor!r} has shape {shape_text(dims)}; radwatch "
                "serves [batch, width] outputs: flatten it in the model"
            )
        check_declared_width(output, dims[1] if dims else None, "the graph's")


def _run(
    session: ort.InferenceSession, spec: ModelSpec, batch: npt.NDArray[np.float32]
) -> dict[str, npt.NDArray[np.float32]]:
    assert spec.input is not None
    names = [o.tensor for o in spec.outputs]
    values = session.run(names, {spec.input.name: np.ascontiguousarray(batch, np.float32)})
    return {n: np.asarray(v) for n, v in zip(names, values, strict=True)}


def _probe(session: ort.InferenceSession, spec: ModelSpec) -> None:
    for batch in PROBE_BATCHES:
        try:
            arrays = _run(session, spec, zero_batch(spec, batch))
        except Exception as exc:
            raise ImportRefusedError(
                f"onnxruntime fails on a zero batch of shape {list(example_shape(spec, batch))}"
                f": {brief(exc)}; export the model with a dynamic batch"
            ) from None
        check_output_arrays(spec, arrays, batch, "the model")


def _source_sha256(source: Path, data_files: list[Path]) -> str:
    """The .onnx file's hash; with external data, a hash over it and its data files."""
    if not data_files:
        return file_digest(source)
    digest = hashlib.sha256()
    for path in [source, *data_files]:
        digest.update(f"{path.name}\0{file_digest(path)}\n".encode())
    return digest.hexdigest()


def _card_fields(model: onnx.ModelProto) -> dict[str, Any]:
    """Card fields an exporter may have put in ``metadata_props`` (same keys as the card)."""
    props = {p.key: p.value for p in model.metadata_props}
    keys = ("name", "version", "description", "authors", "license", "intended_use")
    fields: dict[str, Any] = {k: props[k] for k in keys if props.get(k)}
    if model.doc_string and "description" not in fields:
        fields["description"] = model.doc_string
    if model.model_version and "version" not in fields:
        fields["version"] = str(model.model_version)
    return fields


def import_onnx(source: Path, spec: ModelSpec | None, workdir: Path) -> ImportedModel:
    """Check an ``.onnx`` file against its spec and publish ``model.onnx`` into ``workdir``."""
    spec = require_spec(spec, RUNTIME, "an ONNX model")
    model, data_files = _load(source)
    _check(model)
    session = _session(model)
    _check_input(model, spec)
    _check_outputs(model, spec)
    _probe(session, spec)
    digest = _source_sha256(source, data_files)
    with tempfile.TemporaryDirectory(prefix="radwatch-import-") as tmp:
        staged = source
        if data_files:
            staged = Path(tmp) / ARTIFACT
            onnx.save_model(model, str(staged), save_as_external_data=False)
        artifact = publish(staged, workdir, ARTIFACT)
    fields = {"name": source.stem, **_card_fields(model)}
    extra = {
        "producer": f"{model.producer_name} {model.producer_version}".strip() or None,
        "opset": {o.domain or "ai.onnx": o.version for o in model.opset_import},
    }
    card = build_card(spec, source_format="onnx", source_sha256=digest, extra=extra, **fields)
    return ImportedModel(spec, artifact, "onnx", digest, card, source)


def onnx_runtime(path: Path, spec: ModelSpec) -> Runner:
    """The model's own runtime: an onnxruntime CPU session over the file at ``path``."""
    session = ort.InferenceSession(str(path), providers=PROVIDERS)

    def run(batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        return _run(session, spec, batch)

    return run
