"""Export a RadiographNet version into a Triton model repository (Python backend, CPU).

Layout written, one folder per model and one numbered folder per version::

    <repository>/<model_name>/config.pbtxt
    <repository>/<model_name>/<version>/model.py     (copied from pipelines/triton_model/model.py)
    <repository>/<model_name>/<version>/model.pt2    (pipelines.model.export_torchscript)

``version_policy: { all { } }`` makes a load serve every version folder, so a champion and a
candidate of the same model can run side by side and be addressed by version number.

A version folder is written in a hidden staging folder and renamed into place, so a Triton load
that races an export sees either the whole version or none of it. An existing version is never
overwritten: Triton may be serving it. Exporting the *same* weights again (a rollback redeploys
an old version) is a no-op; different weights under an existing number are refused. The version
folder keeps a digest of the weights (``weights.sha256``) to tell the two apart.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from pipelines.contract import (
    EMBEDDING_DIM,
    FINDINGS,
    IMAGE_SIZE,
    TRITON_INPUT,
    TRITON_MAX_BATCH,
    TRITON_OUTPUT_EMBEDDING,
    TRITON_OUTPUT_PROBS,
)
from pipelines.errors import ExportConflictError, InvalidExportError
from pipelines.model import RadiographNet, export_torchscript

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.py"
ARCHIVE_FILE = "model.pt2"
DIGEST_FILE = "weights.sha256"
TEMPLATE = Path(__file__).with_name("triton_model") / MODEL_FILE

#: Triton accepts other names too; this subset is safe as a directory name and in URLs.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: Microseconds a request may wait for others to fill a batch. 2 ms is small next to a CPU
#: forward pass (tens of ms) and lets concurrent single-image requests share one pass.
DEFAULT_MAX_QUEUE_DELAY_US = 2000


def render_config(
    model_name: str,
    *,
    torch_threads: int = 1,
    instance_count: int = 1,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> str:
    """The ``config.pbtxt`` text (protobuf text format) for the model, shared by all versions."""
    _check_name(model_name)
    if torch_threads < 1 or instance_count < 1 or max_queue_delay_us < 0:
        raise InvalidExportError(
            "torch_threads and instance_count must be >= 1 and max_queue_delay_us >= 0; got "
            f"{torch_threads}, {instance_count}, {max_queue_delay_us}"
        )
    return f"""name: "{model_name}"
backend: "python"
max_batch_size: {TRITON_MAX_BATCH}
version_policy: {{ all {{ }} }}
input [
  {{ name: "{TRITON_INPUT}" data_type: TYPE_FP32 dims: [ 1, {IMAGE_SIZE}, {IMAGE_SIZE} ] }}
]
output [
  {{ name: "{TRITON_OUTPUT_PROBS}" data_type: TYPE_FP32 dims: [ {len(FINDINGS)} ] }},
  {{ name: "{TRITON_OUTPUT_EMBEDDING}" data_type: TYPE_FP32 dims: [ {EMBEDDING_DIM} ] }}
]
dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}
instance_group [ {{ kind: KIND_CPU count: {instance_count} }} ]
parameters: {{ key: "TORCH_NUM_THREADS" value: {{ string_value: "{torch_threads}" }} }}
"""


def _check_name(model_name: str) -> None:
    if not _NAME_RE.match(model_name):
        raise InvalidExportError(
            f"Triton model name {model_name!r} is not allowed: use 1-128 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit."
        )


def _check_model(model: RadiographNet) -> None:
    cfg = model.config
    if cfg.n_findings != len(FINDINGS) or cfg.embedding_dim != EMBEDDING_DIM:
        raise InvalidExportError(
            f"The model has {cfg.n_findings} findings and a {cfg.embedding_dim}-wide embedding; "
            f"the serving contract needs {len(FINDINGS)} and {EMBEDDING_DIM} "
            "(pipelines/contract.py). Train it with the contract's defaults."
        )


def weights_digest(model: RadiographNet) -> str:
    """SHA-256 over the state dict (names, dtypes, shapes, bytes): equal iff the weights are."""
    digest = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().cpu().contiguous()
        digest.update(f"{key}|{data.dtype}|{tuple(data.shape)}|".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_model(
    model: RadiographNet,
    repository: Path,
    model_name: str,
    version: int,
    *,
    torch_threads: int = 1,
    instance_count: int = 1,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> Path:
    """Write ``version`` of ``model_name`` into ``repository``; return the version folder.

    Other versions already in the folder are kept. ``config.pbtxt`` is (re)written for the whole
    model; Triton reads it on the next load. Re-exporting identical weights returns the existing
    folder untouched. Raises :class:`ExportConflictError` when the version exists with other weights
    and :class:`InvalidExportError` for a bad name, version or model shape.
    """
    _check_name(model_name)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidExportError(f"Triton versions are integers >= 1, got {version!r}")
    _check_model(model)
    config = render_config(
        model_name,
        torch_threads=torch_threads,
        instance_count=instance_count,
        max_queue_delay_us=max_queue_delay_us,
    )
    model_dir = Path(repository) / model_name
    version_dir = model_dir / str(version)
    digest = weights_digest(model)
    if version_dir.exists():
        _check_same_weights(version_dir, digest, model_name, version)
        _write_atomic(model_dir / CONFIG_FILE, config)
        return version_dir
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
    try:
        shutil.copyfile(TEMPLATE, staging / MODEL_FILE)
        export_torchscript(model, staging / ARCHIVE_FILE)
        (staging / DIGEST_FILE).write_text(digest + "\n")
        _write_atomic(model_dir / CONFIG_FILE, config)
        try:
            staging.rename(version_dir)
        except OSError:
            # Another export of the same version won the race; accept it only if identical.
            _check_same_weights(version_dir, digest, model_name, version)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def _check_same_weights(version_dir: Path, digest: str, model_name: str, version: int) -> None:
    digest_file = version_dir / DIGEST_FILE
    existing = digest_file.read_text().strip() if digest_file.is_file() else None
    complete = (version_dir / MODEL_FILE).is_file() and (version_dir / ARCHIVE_FILE).is_file()
    if existing != digest or not complete:
        raise ExportConflictError(
            f"Version {version} of Triton model {model_name!r} already exists in "
            f"{version_dir.parent} with different weights; versions are immutable. Export under "
            "a new version number, or unload the model and delete the folder first."
        )
