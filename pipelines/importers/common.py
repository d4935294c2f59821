"""What every importer shares: the refusal error, the imported model, hashing, output checks.

An importer either returns an :class:`ImportedModel` whose artifact already passed every check,
or raises :class:`ImportRefusedError` and leaves the work folder untouched. The artifact is built
in a private temporary folder and moved into the work folder only as the very last step
(:func:`publish`), so a refusal can never leave half an artifact where the registry looks for one.

The served artifact has one convention per runtime, so the Triton side needs no per-model code:
an ONNX artifact names its outputs by the spec's tensor names; a ``torch.export`` artifact
(``model.pt2``) takes one float32 tensor ``[B, *input.shape]`` and returns a *tuple* of tensors in
the order of ``spec.outputs``, with a dynamic batch from 1 to ``spec.max_batch_size``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pipelines.errors import PipelineError
from pipelines.export_triton import file_digest
from pipelines.spec import EmbeddingOutput, FindingsOutput, ModelSpec, Output

SourceFormat = Literal["onnx", "torch-export", "monai-bundle"]

#: Artifact file names by spec runtime: the single file radwatch serves.
ARTIFACT_NAMES: Mapping[str, str] = {"onnx": "model.onnx", "torch-export": "model.pt2"}

#: Batch sizes of the zero-batch forward passes: 2 catches batch sizes baked into a graph traced
#: at 1 (reshape constants), 1 catches graphs that specialised on the example batch of 2.
PROBE_BATCHES: tuple[int, ...] = (2, 1)


class ImportRefusedError(PipelineError):
    """A model radwatch will not import; the message is one line naming what to fix."""

    def __init__(self, message: str) -> None:
        # Tooling errors (onnxruntime, torch) are multi-line; the CLI and the API show one line.
        super().__init__(" ".join(message.split()))


@dataclass(frozen=True)
class ImportedModel:
    """A validated, servable model: the artifact radwatch serves and the spec it serves under.

    ``source`` is the file or bundle it came from, kept so :func:`reference_runtime` can run the
    model's own runtime on it; ``source_sha256`` pins exactly which bytes were checked.
    """

    spec: ModelSpec
    artifact: Path
    source_format: SourceFormat
    source_sha256: str
    card: dict[str, Any]
    source: Path


def tree_sha256(root: Path) -> str:
    """A hash of a directory tree that does not depend on file order, times or the root's name.

    Each regular file contributes its POSIX path relative to ``root`` and its content hash, in
    sorted path order, so the same bundle copied or unpacked anywhere hashes the same.
    """
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        digest.update(file_digest(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def require_spec(spec: ModelSpec | None, runtime: str, what: str) -> ModelSpec:
    """The spec of a format that cannot describe itself (ONNX, ``.pt2``) is not optional.

    ``what`` names the source with its article ("an ONNX model"); it starts the message.
    """
    if spec is None:
        raise ImportRefusedError(
            f"{what} needs a spec: pass --spec with its input, outputs and "
            f'preprocessing (runtime "{runtime}")'
        )
    return check_runtime(spec, runtime, what)


def check_runtime(spec: ModelSpec, runtime: str, what: str) -> ModelSpec:
    if spec.runtime != runtime:
        raise ImportRefusedError(
            f'{what} is served by runtime "{runtime}"; set the spec\'s runtime to '
            f'"{runtime}" (it says "{spec.runtime}")'
        )
    if spec.input is None:  # parse_spec already guarantees this for non-probe runtimes
        raise ImportRefusedError("the spec has no input; give input.name and input.shape")
    return spec


def output_width(output: Output) -> int:
    """Per-sample width of a served output. Reports and masks are not served yet: refuse."""
    if isinstance(output, FindingsOutput):
        return len(output.findings)
    if isinstance(output, EmbeddingOutput):
        return output.width
    raise ImportRefusedError(
        f"spec output {output.tensor!r} is of kind {output.kind!r}, which radwatch cannot serve "
        "yet; import findings and embedding outputs only"
    )


def describe_output(output: Output) -> str:
    if isinstance(output, FindingsOutput):
        return f"{len(output.findings)} findings"
    if isinstance(output, EmbeddingOutput):
        return f"embedding width {output.width}"
    return output.kind


def check_declared_width(output: Output, declared: int | str | None, where: str) -> None:
    """Compare a statically declared output width (``None``/name: unknown until run)."""
    width = output_width(output)
    if isinstance(declared, int) and declared != width:
        raise ImportRefusedError(
            f"{where} output {output.tensor!r} has width {declared} but the spec declares "
            f"{describe_output(output)}; make the spec's output match the model"
        )


def check_output_arrays(
    spec: ModelSpec, arrays: Mapping[str, npt.NDArray[Any]], batch: int, where: str
) -> None:
    """Every spec output is present with shape ``[batch, width]``: what Triton will serve."""
    for output in spec.outputs:
        if output.tensor not in arrays:
            raise ImportRefusedError(
                f"{where} returns no {output.tensor!r} output (it returns "
                f"{sorted(arrays)}); name the spec's output tensors as the model does"
            )
        shape = tuple(arrays[output.tensor].shape)
        expected = (batch, output_width(output))
        if shape != expected:
            raise ImportRefusedError(
                f"{where} returns {output.tensor!r} with shape {list(shape)} for a batch of "
                f"{batch}, but the spec declares {describe_output(output)} (shape "
                f"{list(expected)}); make the spec's output match the model"
            )


def example_shape(spec: ModelSpec, batch: int) -> tuple[int, ...]:
    """A concrete input shape: each dynamic dimension at its smallest declared size."""
    assert spec.input is not None
    dims = [d if isinstance(d, int) else spec.input.dynamic[d].min for d in spec.input.shape]
    return (batch, *dims)


def zero_batch(spec: ModelSpec, batch: int) -> npt.NDArray[np.float32]:
    return np.zeros(example_shape(spec, batch), dtype=np.float32)


def shape_text(shape: Sequence[int | str | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def spec_shape_text(spec: ModelSpec) -> str:
    """The spec's input as the model sees it, batch first: ``[batch, 1, 96, 96]``."""
    assert spec.input is not None
    return shape_text(["batch", *spec.input.shape])


def check_input_dims(
    dims: Sequence[object],
    spec: ModelSpec,
    *,
    what: str,
    shown: Sequence[int | str | None],
    on_dynamic: Callable[[object, str], None] | None = None,
) -> None:
    """Compare a model's per-sample input dims (``dims[1:]``; ints are fixed, anything else is
    dynamic) with the spec's, refusing mismatches and undeclared dynamic dims. ``what`` names the
    model in messages ("graph", "program"); ``on_dynamic(dim, name)`` checks a dimension both
    sides call dynamic (e.g. its range)."""
    assert spec.input is not None
    undeclared: list[str] = []
    for axis, (have, declared) in enumerate(zip(dims[1:], spec.input.shape, strict=True), 1):
        if isinstance(have, int) and isinstance(declared, int) and have != declared:
            raise ImportRefusedError(
                f"the {what}'s input has shape {shape_text(shown)} but the spec declares "
                f"{spec_shape_text(spec)}; make input.shape match the model"
            )
        if isinstance(have, int) and isinstance(declared, str):
            raise ImportRefusedError(
                f"the spec declares input dimension {axis} ({declared!r}) dynamic but the "
                f"{what} fixes it at {have}; declare {have} in input.shape"
            )
        if not isinstance(have, int) and isinstance(declared, int):
            named = f" ({have})" if isinstance(have, str) else " (unnamed)" if have is None else ""
            undeclared.append(f"axis {axis}{named}")
        if not isinstance(have, int) and isinstance(declared, str) and on_dynamic is not None:
            on_dynamic(have, declared)
    if undeclared:
        raise ImportRefusedError(
            f"undeclared dynamic dims: the {what}'s input {shape_text(shown)} is dynamic at "
            f"{', '.join(undeclared)}; name them in input.shape and give their range in "
            "input.dynamic, or export them static"
        )


def brief(exc: BaseException) -> str:
    """A tool's error on one line, at most 300 characters (onnxruntime and torch write pages;
    their first line alone is often a bare heading such as "Error(s) in loading state_dict")."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def publish(staged: Path, workdir: Path, name: str) -> Path:
    """Move a fully checked artifact into ``workdir`` atomically (temporary name, then rename).

    The staging file lives outside ``workdir`` (possibly on another filesystem), so it is copied
    next to its final name first; a reader of ``workdir`` sees the whole artifact or none.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    final = workdir / name
    partial = workdir / f".{name}.partial"
    shutil.copyfile(staged, partial)
    os.replace(partial, final)
    return final


def build_card(
    spec: ModelSpec,
    *,
    source_format: SourceFormat,
    source_sha256: str,
    name: str,
    version: str | None = None,
    description: str | None = None,
    authors: str | None = None,
    license: str | None = None,
    intended_use: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The model card stored with the version: who made it, for what, and what it outputs.

    Fields the source does not state are ``None`` rather than invented, so a reviewer sees what
    is unknown. The description falls back to the spec's.
    """
    assert spec.input is not None
    findings = spec.findings
    embedding = spec.embedding
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "description": description or spec.description or None,
        "authors": authors,
        "license": license,
        "intended_use": intended_use,
        "source_format": source_format,
        "source_sha256": source_sha256,
        "findings": list(findings.names) if findings is not None else [],
        "embedding_width": embedding.width if embedding is not None else None,
        "input": {
            "name": spec.input.name,
            "shape": list(spec.input.shape),
            "modality": spec.modality,
        },
    }
    card.update(extra or {})
    return card
