"""Bring-your-own-model: turn a user's model file into a validated, servable artifact and spec.

Three formats, one result (:class:`ImportedModel`):

- ``*.onnx`` (spec required): served as ``model.onnx`` by onnxruntime (:mod:`.onnx_model`);
- ``*.pt2`` from ``torch.export`` (spec required): served as ``model.pt2`` (:mod:`.torch_export`);
- a MONAI Bundle, folder or ``*.zip`` (spec derived from its metadata and inference config
  unless given): its network exported to ``model.pt2`` (:mod:`.monai_bundle`; the mapping of
  its inference transforms onto radwatch's preprocessing is :mod:`.monai_transforms`).

Every importer refuses with :class:`ImportRefusedError` (one line naming the fix) and writes
nothing to the work folder unless the whole import succeeds. :func:`reference_runtime` runs a
model in its *own* runtime, so tests (and a sceptical user) can check that what radwatch serves
computes what the model computes.

The format modules are imported on first use: onnxruntime and MONAI take seconds to import, and
the CLI and the API should not pay that for commands that import no model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from pipelines.importers.common import ImportedModel, ImportRefusedError, SourceFormat
from pipelines.spec import ModelSpec

__all__ = [
    "ImportRefusedError",
    "ImportedModel",
    "SourceFormat",
    "import_model",
    "reference_runtime",
    "source_format_of",
]

Runner = Callable[[npt.NDArray[np.float32]], dict[str, npt.NDArray[np.float32]]]


def source_format_of(source: Path) -> SourceFormat:
    """Which importer handles ``source``, by what it is (folder) or its file name suffix."""
    if source.is_dir():
        return "monai-bundle"
    if not source.is_file():
        raise ImportRefusedError(f"{source} does not exist; give the path of the model file")
    suffix = source.suffix.lower()
    if suffix == ".onnx":
        return "onnx"
    if suffix == ".pt2":
        return "torch-export"
    if suffix == ".zip":
        return "monai-bundle"
    raise ImportRefusedError(
        f"radwatch imports .onnx files, torch.export .pt2 archives and MONAI bundles (a folder "
        f"or .zip); {source.name} is none of these"
    )


def import_model(source: Path, spec: ModelSpec | None, workdir: Path) -> ImportedModel:
    """Validate ``source`` and write its servable artifact into ``workdir``.

    ``spec`` is required for ONNX and ``.pt2`` (they do not say what their outputs mean) and
    optional for a bundle, where it overrides the derived spec.
    """
    source = Path(source)
    fmt = source_format_of(source)
    if fmt == "onnx":
        from pipelines.importers.onnx_model import import_onnx

        return import_onnx(source, spec, Path(workdir))
    if fmt == "torch-export":
        from pipelines.importers.torch_export import import_torch_export

        return import_torch_export(source, spec, Path(workdir))
    from pipelines.importers.monai_bundle import import_bundle

    return import_bundle(source, spec, Path(workdir))


def reference_runtime(imported: ImportedModel) -> Runner:
    """The model's own runtime on a prepared float32 batch ``[B, *input.shape]``.

    Returns ``{output tensor name: array}`` for the spec's outputs: onnxruntime over the source
    ``.onnx``; ``torch.export.load(...).module()`` over the source ``.pt2``; for a bundle, the
    eager network built by ``monai.bundle.ConfigParser`` with the bundle's weights. It never
    reads the artifact, so comparing the two checks the import itself.
    """
    if imported.source_format == "onnx":
        from pipelines.importers.onnx_model import onnx_runtime

        return onnx_runtime(imported.source, imported.spec)
    if imported.source_format == "torch-export":
        from pipelines.importers.torch_export import torch_export_runtime

        return torch_export_runtime(imported.source, imported.spec)
    from pipelines.importers.monai_bundle import bundle_runtime

    return bundle_runtime(imported.source, imported.spec)
