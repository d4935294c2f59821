"""Import a ``torch.export`` archive (``.pt2``) and export networks to radwatch's ``.pt2`` form.

A ``.pt2`` carries its graph, weights and the ranges of its dynamic dimensions, but not what its
outputs mean, so a spec is required. The checks read the program's own signature (one tensor
input, which dimensions are symbolic and their ranges) and then *run* it on zero batches of 2 and
1, because a graph can declare a dynamic batch yet still have a size baked in somewhere.

The served artifact returns a tuple in ``spec.outputs`` order (see :mod:`.common`). An archive
that already does is copied byte for byte, so its hash is the user's; one that returns a dict
keyed by tensor name, or a bare tensor, is wrapped and exported again (:func:`export_module`).
:mod:`.monai_bundle` exports bundle networks through the same function.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from pipelines.export_triton import file_digest
from pipelines.importers.common import (
    ARTIFACT_NAMES,
    PROBE_BATCHES,
    ImportedModel,
    ImportRefusedError,
    brief,
    build_card,
    check_input_dims,
    check_output_arrays,
    example_shape,
    publish,
    require_spec,
    shape_text,
    spec_shape_text,
    zero_batch,
)
from pipelines.spec import DynamicDim, ModelSpec

RUNTIME = "torch-export"
ARTIFACT = ARTIFACT_NAMES[RUNTIME]

Runner = Callable[[npt.NDArray[np.float32]], dict[str, npt.NDArray[np.float32]]]


def outputs_by_name(result: Any, spec: ModelSpec, where: str) -> dict[str, torch.Tensor]:
    """Map what a network returns onto the spec's output tensor names.

    A tuple or list maps in ``spec.outputs`` order and must have exactly that many tensors (a
    silent extra output would mean the order is not what the spec author thought); a dict maps
    by key, extra keys ignored; a bare tensor is a model with one output.
    """
    names = [o.tensor for o in spec.outputs]
    if isinstance(result, torch.Tensor):
        result = (result,)
    if isinstance(result, Mapping):
        missing = [n for n in names if n not in result]
        if missing:
            raise ImportRefusedError(
                f"{where} returns a dict with keys {sorted(map(str, result))} but no "
                f"{missing}; key its outputs by the spec's tensor names"
            )
        values = [result[n] for n in names]
    elif isinstance(result, Sequence):
        if len(result) != len(names):
            raise ImportRefusedError(
                f"{where} returns {len(result)} output(s) but the spec declares {len(names)} "
                f"({names}, in this order); make spec.outputs list one entry per model output"
            )
        values = list(result)
    else:
        raise ImportRefusedError(
            f"{where} returns a {type(result).__name__}; return a tensor, a tuple of tensors "
            "in spec.outputs order, or a dict keyed by tensor name"
        )
    for name, value in zip(names, values, strict=True):
        if not isinstance(value, torch.Tensor):
            raise ImportRefusedError(
                f"{where} returns a {type(value).__name__} for {name!r}; return tensors"
            )
    return dict(zip(names, values, strict=True))


def run_module(
    module: Callable[..., Any], spec: ModelSpec, batch: npt.NDArray[np.float32], where: str
) -> dict[str, npt.NDArray[np.float32]]:
    with torch.inference_mode():
        result = module(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
    tensors = outputs_by_name(result, spec, where)
    return {k: v.detach().cpu().to(torch.float32).numpy() for k, v in tensors.items()}


def probe(module: Callable[..., Any], spec: ModelSpec, where: str) -> None:
    """Zero batches of 2 and 1 through the model: output names, count and shapes as served."""
    for batch in PROBE_BATCHES:
        try:
            arrays = run_module(module, spec, zero_batch(spec, batch), where)
        except ImportRefusedError:
            raise
        except Exception as exc:
            raise ImportRefusedError(
                f"{where} fails on a zero batch of shape {list(example_shape(spec, batch))}: "
                f"{brief(exc)}; export it for the spec's input shape with a dynamic batch"
            ) from None
        check_output_arrays(spec, arrays, batch, where)


class _SpecOrder(nn.Module):
    """Wraps a network so it returns a tuple in ``spec.outputs`` order: the served form."""

    def __init__(self, inner: Callable[..., Any], spec: ModelSpec) -> None:
        super().__init__()
        self.inner = inner
        self.spec = spec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        mapped = outputs_by_name(self.inner(x), self.spec, "the network")
        return tuple(mapped[o.tensor] for o in self.spec.outputs)


def export_module(module: Callable[..., Any], spec: ModelSpec, path: Path, where: str) -> None:
    """``torch.export`` a network into ``path``: tuple outputs, batch dynamic 1..max_batch_size.

    Declared dynamic dimensions of the spec stay dynamic over their declared range. The example
    batch is 2 (an example of 1 would let the exporter specialise the batch to 1). The caller
    puts an ``nn.Module`` in eval mode first (a loaded program's module has no modes).
    """
    assert spec.input is not None
    dims: dict[int, Any] = {0: torch.export.Dim("batch", min=1, max=spec.max_batch_size)}
    for axis, d in enumerate(spec.input.shape, start=1):
        if isinstance(d, str):
            r = spec.input.dynamic[d]
            # spec names may hold '.', ':' or '-'; a Dim's name must be an identifier
            dims[axis] = torch.export.Dim(f"dim{axis}", min=r.min, max=r.max)
    example = torch.zeros(example_shape(spec, 2), dtype=torch.float32)
    try:
        program = torch.export.export(
            _SpecOrder(module, spec), (example,), dynamic_shapes={"x": dims}
        )
    except ImportRefusedError:
        raise
    except Exception as exc:
        raise ImportRefusedError(
            f"{where} cannot be exported with torch.export for a dynamic batch 1.."
            f"{spec.max_batch_size}: {brief(exc)}"
        ) from None
    torch.export.save(program, str(path))


def _load(path: Path) -> torch.export.ExportedProgram:
    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise ImportRefusedError(
            f"{path.name} is not a torch.export archive torch {torch.__version__} can load: "
            f"{brief(exc)}; save it with torch.export.save"
        ) from None


def _user_input_dims(program: torch.export.ExportedProgram) -> list[int | torch.SymInt]:
    """The one user input's dimensions (ints, or SymInts for dynamic ones)."""
    user_inputs = list(program.graph_signature.user_inputs)
    in_spec = program.call_spec.in_spec
    kwargs_spec = in_spec.child(1) if in_spec is not None else None
    if len(user_inputs) != 1 or (kwargs_spec is not None and kwargs_spec.num_leaves):
        raise ImportRefusedError(
            f"the program takes {len(user_inputs)} inputs ({list(map(str, user_inputs))}); "
            "radwatch serves one image tensor: export forward(self, x) with one tensor argument"
        )
    node = next(
        n for n in program.graph.nodes if n.op == "placeholder" and n.name == user_inputs[0]
    )
    value = node.meta.get("val")
    if not isinstance(value, torch.Tensor):
        raise ImportRefusedError(
            f"the program's input {user_inputs[0]!r} is not a tensor; export forward(self, x) "
            "with one float32 image tensor"
        )
    return list(value.shape)


def _check_range(
    program: torch.export.ExportedProgram, dim: torch.SymInt, want: DynamicDim, name: str
) -> None:
    """The program's range for a dynamic dimension covers every size radwatch may send."""
    bounds = program.range_constraints.get(dim.node.expr)
    if bounds is None:
        return
    lower, upper = int(bounds.lower), bounds.upper
    if lower > want.min or (upper.is_finite and int(upper) < want.max):
        fix = "lower spec.max_batch_size" if name == "batch" else "narrow input.dynamic"
        raise ImportRefusedError(
            f"the program accepts {name} sizes {lower}..{upper} but the spec lets radwatch send "
            f"{want.min}..{want.max}; export with Dim(min={want.min}, max={want.max}) or {fix}"
        )


def _check_signature(program: torch.export.ExportedProgram, spec: ModelSpec) -> None:
    """Input rank, fixed sizes, batch range and dynamic dimensions against the spec."""
    assert spec.input is not None
    dims = _user_input_dims(program)
    shown = ["batch" if i == 0 else d if isinstance(d, int) else str(d) for i, d in enumerate(dims)]
    want = ["batch", *spec.input.shape]
    if len(dims) != len(want):
        raise ImportRefusedError(
            f"the program's input has shape {shape_text(shown)} (rank {len(dims)}) but the spec "
            f"declares {spec_shape_text(spec)} (rank {len(want)}); make input.shape "
            "match the model"
        )
    batch = dims[0]
    if isinstance(batch, int):
        raise ImportRefusedError(
            f"the program's batch dimension is fixed at {batch}; export with a dynamic batch: "
            f'dynamic_shapes={{"x": {{0: torch.export.Dim("batch", min=1, '
            f"max={spec.max_batch_size})}}}}"
        )
    _check_range(program, batch, DynamicDim(min=1, max=spec.max_batch_size), "batch")
    declared_ranges = spec.input.dynamic

    def in_range(have: object, declared: str) -> None:
        assert isinstance(have, torch.SymInt)
        _check_range(program, have, declared_ranges[declared], f"{declared!r}")

    check_input_dims(dims, spec, what="program", shown=shown, on_dynamic=in_range)


def _returns_spec_tuple(program: torch.export.ExportedProgram, spec: ModelSpec) -> bool:
    out_spec = program.call_spec.out_spec
    return (
        out_spec is not None
        and out_spec.type in (tuple, list)
        and out_spec.num_children == len(spec.outputs)
        and all(c.is_leaf() for c in out_spec.children())
    )


def import_torch_export(source: Path, spec: ModelSpec | None, workdir: Path) -> ImportedModel:
    """Check a ``.pt2`` against its spec and publish ``model.pt2`` (see the module docstring)."""
    spec = require_spec(spec, RUNTIME, "a torch.export archive (.pt2)")
    program = _load(source)
    _check_signature(program, spec)
    module = program.module()
    probe(module, spec, "the program")
    digest = file_digest(source)
    with tempfile.TemporaryDirectory(prefix="radwatch-import-") as tmp:
        staged = source
        if not _returns_spec_tuple(program, spec):
            staged = Path(tmp) / ARTIFACT
            export_module(module, spec, staged, "the program")
            probe(torch.export.load(str(staged)).module(), spec, "the re-exported program")
        artifact = publish(staged, workdir, ARTIFACT)
    card = build_card(spec, source_format="torch-export", source_sha256=digest, name=source.stem)
    return ImportedModel(spec, artifact, "torch-export", digest, card, source)


def torch_export_runtime(path: Path, spec: ModelSpec) -> Runner:
    """The archive's own runtime: ``torch.export.load(...).module()`` in inference mode."""
    module = torch.export.load(str(path)).module()

    def run(batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
        return run_module(module, spec, batch, path.name)

    return run
