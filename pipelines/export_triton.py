"""Export a model version, described by its :class:`~pipelines.spec.ModelSpec`, into a Triton
model repository (CPU).

Layout written, one folder per model and one numbered folder per version::

    <repository>/<model_name>/config.pbtxt           (from the spec: tensors, dims, batch size)
    <repository>/<model_name>/<version>/model.onnx   (or model.pt2: the artifact, copied)
    <repository>/<model_name>/<version>/model.py     (flavour "python": the generic model)
    <repository>/<model_name>/<version>/weights.sha256

Two flavours. ``python`` (the default) serves a ``torch.export`` archive or an ONNX model
through the generic Python-backend model in ``pipelines/triton_model/model.py``; it runs on the
``tritonserver`` bundled with nvidia-pytriton (which has only the Python backend) and on any
Triton image whose Python has numpy and torch (and onnxruntime for ONNX). ``onnxruntime`` writes
a config for Triton's native ONNX Runtime backend (``platform: "onnxruntime_onnx"``): a stock
NVIDIA Triton image serves it without any Python packages, but the bundled server cannot.

``version_policy: { all { } }`` makes a load serve every version folder, so a champion and a
candidate of the same model run side by side, addressed by version number. Because one
``config.pbtxt`` serves all versions, a version whose spec gives another interface (tensor
names, dims, batch size, runtime, flavour) than the config already there is refused; the
deployment settings (threads, instances, queue delay) may change and are rewritten.

A version folder is written in a hidden staging folder and renamed into place, so a Triton load
that races an export sees either the whole version or none of it. An existing version is never
overwritten: Triton may be serving it. Exporting the *same* model again (a rollback redeploys an
old version) is a no-op; a different one under an existing number is refused. The version folder
keeps a digest (``weights.sha256``) to tell the two apart: of the artifact's bytes for
:func:`export_version`, of the state dict for :func:`export_model` (``torch.export.save`` does
not write the same bytes twice for the same weights).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from pipelines.contract import EMBEDDING_DIM, FINDINGS
from pipelines.errors import ExportConflictError, InvalidExportError
from pipelines.model import RadiographNet, builtin_spec, export_torchscript
from pipelines.spec import EmbeddingOutput, FindingsOutput, ModelSpec, Output

Flavour = Literal["python", "onnxruntime"]

CONFIG_FILE = "config.pbtxt"
MODEL_FILE = "model.py"
ARCHIVE_FILE = "model.pt2"
ONNX_FILE = "model.onnx"
DIGEST_FILE = "weights.sha256"
TEMPLATE = Path(__file__).with_name("triton_model") / MODEL_FILE
#: The artifact's file name in a version folder, by spec runtime.
ARTIFACT_FILES = {"torch-export": ARCHIVE_FILE, "onnx": ONNX_FILE}

#: Config parameters the generic model reads (the same names are spelled out in
#: ``triton_model/model.py``, which cannot import radwatch; a test keeps them equal).
RUNTIME_PARAMETER = "RADWATCH_RUNTIME"
ARTIFACT_PARAMETER = "RADWATCH_ARTIFACT"
THREADS_PARAMETER = "TORCH_NUM_THREADS"
#: Parameters that are deployment settings, not part of the model's interface.
_OPERATIONAL_PARAMETERS = frozenset(
    {THREADS_PARAMETER, "intra_op_thread_count", "inter_op_thread_count"}
)

#: Triton accepts other names too; this subset is safe as a directory name and in URLs.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

#: Microseconds a request may wait for others to fill a batch. 2 ms is small next to a CPU
#: forward pass (tens of ms) and lets concurrent single-image requests share one pass.
DEFAULT_MAX_QUEUE_DELAY_US = 2000


def _tensor_line(name: str, dims: str) -> str:
    return f'  {{ name: "{name}" data_type: TYPE_FP32 dims: [ {dims} ] }}'


def _parameter_line(key: str, value: str) -> str:
    return f'parameters: {{ key: "{key}" value: {{ string_value: "{value}" }} }}'


def _output_width(output: Output) -> int:
    if isinstance(output, FindingsOutput | EmbeddingOutput):
        return len(output.findings) if isinstance(output, FindingsOutput) else output.width
    raise InvalidExportError(
        f"output {output.tensor!r} is a {output.kind!r} output, which radwatch does not serve "
        "yet; serve 'findings' and 'embedding' outputs only"
    )


def _check_servable(spec: ModelSpec, flavour: str) -> None:
    if spec.runtime == "probe":
        raise InvalidExportError(
            "a probe (runtime 'probe') is not exported to Triton: the gateway applies it to "
            "the embeddings of its encoder; export the encoder instead"
        )
    if flavour not in ("python", "onnxruntime"):
        raise InvalidExportError(f"flavour must be 'python' or 'onnxruntime', got {flavour!r}")
    if flavour == "onnxruntime" and spec.runtime != "onnx":
        raise InvalidExportError(
            f"flavour 'onnxruntime' serves ONNX models only, and this spec's runtime is "
            f"{spec.runtime!r}; use flavour 'python'"
        )


def render_spec_config(
    spec: ModelSpec,
    model_name: str,
    *,
    flavour: Flavour = "python",
    torch_threads: int = 1,
    instance_count: int = 1,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> str:
    """The ``config.pbtxt`` text (protobuf text format) for ``spec``, shared by all versions.

    Input dims are the spec's per-sample shape with ``-1`` for dynamic dimensions (Triton adds
    the batch axis, up to ``spec.max_batch_size``); outputs follow the spec's order, ``[F]``
    findings and ``[width]`` embeddings, as the model produced them: a ``logit`` activation is
    applied by the gateway, so both flavours answer the same. ``torch_threads`` is the intra-op
    thread count of one instance, for torch and ONNX Runtime alike.
    """
    _check_name(model_name)
    if torch_threads < 1 or instance_count < 1 or max_queue_delay_us < 0:
        raise InvalidExportError(
            "torch_threads and instance_count must be >= 1 and max_queue_delay_us >= 0; got "
            f"{torch_threads}, {instance_count}, {max_queue_delay_us}"
        )
    _check_servable(spec, flavour)
    assert spec.input is not None  # only probes have none
    dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in spec.input.shape)
    outputs = ",\n".join(_tensor_line(o.tensor, str(_output_width(o))) for o in spec.outputs)
    if flavour == "python":
        engine = 'backend: "python"'
        params = [
            (RUNTIME_PARAMETER, spec.runtime),
            (ARTIFACT_PARAMETER, ARTIFACT_FILES[spec.runtime]),
            (THREADS_PARAMETER, str(torch_threads)),
        ]
    else:
        engine = 'platform: "onnxruntime_onnx"'
        # Keys of the onnxruntime backend's model config parameters (its README).
        params = [("intra_op_thread_count", str(torch_threads)), ("inter_op_thread_count", "1")]
    parameters = "\n".join(_parameter_line(k, v) for k, v in params)
    return f"""name: "{model_name}"
{engine}
max_batch_size: {spec.max_batch_size}
version_policy: {{ all {{ }} }}
input [
{_tensor_line(spec.input.name, dims)}
]
output [
{outputs}
]
dynamic_batching {{ max_queue_delay_microseconds: {max_queue_delay_us} }}
instance_group [ {{ kind: KIND_CPU count: {instance_count} }} ]
{parameters}
"""


def render_config(
    model_name: str,
    *,
    torch_threads: int = 1,
    instance_count: int = 1,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> str:
    """The built-in model's ``config.pbtxt`` (:func:`render_spec_config` of its spec)."""
    return render_spec_config(
        builtin_spec(),
        model_name,
        torch_threads=torch_threads,
        instance_count=instance_count,
        max_queue_delay_us=max_queue_delay_us,
    )


_ENGINE_RE = re.compile(r'^(backend|platform): "([^"]*)"', re.M)
_BATCH_RE = re.compile(r"^max_batch_size: (\d+)", re.M)
_SECTION_RE = re.compile(r"^(input|output) \[(.*?)^\]", re.M | re.S)
_TENSOR_RE = re.compile(r'\{ name: "([^"]+)" data_type: (\w+) dims: \[([^\]]*)\] \}')
_PARAMETER_RE = re.compile(r'key: "([^"]+)" value: \{ string_value: "([^"]*)" \}')


def _interface(config: str) -> dict[str, Any]:
    """The parts of a config written by :func:`render_spec_config` that the spec decides.

    Configs written before runtimes were configurable have no runtime parameters; the generic
    model reads them as a ``torch.export`` archive ``model.pt2``, and so does this.
    """
    engine = _ENGINE_RE.search(config)
    batch = _BATCH_RE.search(config)
    sections = {kind: body for kind, body in _SECTION_RE.findall(config)}
    tensors = {
        kind: [
            (name, dtype, [d.strip() for d in dims.split(",")])
            for name, dtype, dims in _TENSOR_RE.findall(sections.get(kind, ""))
        ]
        for kind in ("input", "output")
    }
    params = {k: v for k, v in _PARAMETER_RE.findall(config) if k not in _OPERATIONAL_PARAMETERS}
    if engine is not None and engine.groups() == ("backend", "python"):
        params.setdefault(RUNTIME_PARAMETER, "torch-export")
        params.setdefault(ARTIFACT_PARAMETER, ARCHIVE_FILE)
    return {
        "engine": engine.groups() if engine else None,
        "max_batch_size": int(batch.group(1)) if batch else None,
        **tensors,
        "parameters": params,
    }


def _check_same_interface(model_dir: Path, config: str, model_name: str) -> None:
    path = model_dir / CONFIG_FILE
    if not path.is_file():
        return
    there, here = _interface(path.read_text()), _interface(config)
    diffs = [
        f"{key}: {there[key]} there, {here[key]} here" for key in here if there[key] != here[key]
    ]
    if diffs:
        raise ExportConflictError(
            f"Triton model {model_name!r} in {model_dir.parent} already has a config that "
            f"differs from this spec's ({'; '.join(diffs)}); one config serves every version "
            "of a model. Export under a new model name, or keep the model's interface."
        )


def _check_name(model_name: str) -> None:
    if not isinstance(model_name, str) or not _NAME_RE.match(model_name):
        raise InvalidExportError(
            f"Triton model name {model_name!r} is not allowed: use 1-128 letters, digits, '_', "
            "'.' or '-', starting with a letter or digit."
        )


def _check_version(version: int) -> None:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise InvalidExportError(f"Triton versions are integers >= 1, got {version!r}")


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


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, read in 1 MiB blocks (artifacts may be gigabytes)."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def _check_artifact(spec: ModelSpec, artifact: Path) -> None:
    """Refuse, before anything is written, an artifact Triton would only fail on at load or at
    the first request: not a file, not a ``torch.export`` archive, or an ONNX model whose
    tensors do not match the spec."""
    if not artifact.is_file():
        raise InvalidExportError(f"model artifact {artifact} is not a file")
    if spec.runtime == "torch-export":
        if not zipfile.is_zipfile(artifact):
            raise InvalidExportError(
                f"{artifact} is not a torch.export archive (the .pt2 zip that "
                "torch.export.save writes), but the spec's runtime is 'torch-export'"
            )
        return
    _check_onnx(spec, artifact)


def _check_onnx(spec: ModelSpec, artifact: Path) -> None:
    import onnx
    from onnx.external_data_helper import uses_external_data

    try:
        model = onnx.load(str(artifact), load_external_data=False)
    except Exception as exc:  # onnx raises protobuf's DecodeError and others
        raise InvalidExportError(
            f"{artifact} is not an ONNX model ({type(exc).__name__}), but the spec's runtime "
            "is 'onnx'"
        ) from None
    graph = model.graph
    if any(uses_external_data(t) for t in graph.initializer):
        raise InvalidExportError(
            f"{artifact} keeps its weights in external data files; export one self-contained "
            "file (torch.onnx.export(..., external_data=False) or onnx.save(model, path, "
            "save_as_external_data=False))"
        )
    assert spec.input is not None
    initializers = {t.name for t in graph.initializer}
    inputs = {i.name: i for i in graph.input if i.name not in initializers}
    problems = []
    if missing := [
        o.tensor for o in spec.outputs if o.tensor not in {o.name for o in graph.output}
    ]:
        problems.append(f"no output(s) {missing} (it has {[o.name for o in graph.output]})")
    if spec.input.name not in inputs:
        problems.append(f"no input {spec.input.name!r} (it has {sorted(inputs)})")
    else:
        dims = [d.dim_value or None for d in inputs[spec.input.name].type.tensor_type.shape.dim]
        # Batch axis: dynamic (or 1 when the spec never batches); a fixed spec dim must agree.
        want = [1 if spec.max_batch_size == 1 else None, *spec.input.shape]
        if len(dims) != len(want) or not all(
            d is None or d == w for d, w in zip(dims, want, strict=True) if not isinstance(w, str)
        ):
            shown = ["?" if d is None else d for d in dims]
            problems.append(
                f"input shape {shown}, not [batch, *{list(spec.input.shape)}] with a dynamic "
                f"batch axis up to {spec.max_batch_size}"
            )
    if problems:
        raise InvalidExportError(f"{artifact} does not match the spec: " + "; ".join(problems))


@contextlib.contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    """Serialise exports of one model on this host, so the config check and write see one
    another (the version rename itself is atomic without it)."""
    fd = os.open(model_dir, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_version(
    spec: ModelSpec,
    artifact: Path,
    repository: Path,
    model_name: str,
    version: int,
    *,
    flavour: Flavour = "python",
    torch_threads: int = 1,
    instance_count: int = 1,
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
) -> Path:
    """Write ``version`` of ``model_name``, served as ``spec`` says, into ``repository``.

    ``artifact`` is the model file (a ``torch.export`` archive or a self-contained ONNX model,
    as ``spec.runtime`` says); it is copied, not moved. Returns the version folder. Raises
    :class:`InvalidExportError` for a bad name, version, spec or artifact, and
    :class:`ExportConflictError` when the version exists with other bytes or the model's config
    has another interface.
    """
    _check_name(model_name)
    _check_version(version)
    ops = {"torch_threads": torch_threads, "instance_count": instance_count}
    config = render_spec_config(
        spec, model_name, flavour=flavour, max_queue_delay_us=max_queue_delay_us, **ops
    )
    artifact = Path(artifact)
    _check_artifact(spec, artifact)
    copy = functools.partial(shutil.copyfile, artifact)
    name = ARTIFACT_FILES[spec.runtime]
    return _export(
        Path(repository), model_name, version, config, flavour, name, file_digest(artifact), copy
    )


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
    """Export the built-in RadiographNet ``model`` (its :func:`builtin_spec`) as ``version``.

    The archive is only written when the version is new; re-exporting identical weights returns
    the existing folder untouched. Raises as :func:`export_version`, and
    :class:`InvalidExportError` for a model off the serving contract.
    """
    _check_name(model_name)
    _check_version(version)
    _check_model(model)
    ops = {"torch_threads": torch_threads, "instance_count": instance_count}
    spec = builtin_spec(model.config)
    config = render_spec_config(
        spec, model_name, flavour="python", max_queue_delay_us=max_queue_delay_us, **ops
    )
    write = functools.partial(export_torchscript, model)
    digest = weights_digest(model)
    return _export(
        Path(repository), model_name, version, config, "python", ARCHIVE_FILE, digest, write
    )


def _export(
    repository: Path,
    model_name: str,
    version: int,
    config: str,
    flavour: Flavour,
    artifact_name: str,
    digest: str,
    write_artifact: Callable[[Path], object],
) -> Path:
    model_dir = repository / model_name
    version_dir = model_dir / str(version)
    required = (artifact_name, MODEL_FILE) if flavour == "python" else (artifact_name,)
    model_dir.mkdir(parents=True, exist_ok=True)
    with _locked(model_dir):
        _check_same_interface(model_dir, config, model_name)
        if version_dir.exists():
            _check_same_artifact(version_dir, digest, required, model_name, version)
            _write_atomic(model_dir / CONFIG_FILE, config)
            return version_dir
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{version}-", dir=model_dir))
        try:
            if flavour == "python":
                shutil.copyfile(TEMPLATE, staging / MODEL_FILE)
            write_artifact(staging / artifact_name)
            (staging / DIGEST_FILE).write_text(digest + "\n")
            _write_atomic(model_dir / CONFIG_FILE, config)
            try:
                staging.rename(version_dir)
            except OSError:
                # Another host's export of the same version won the race; accept it if identical.
                _check_same_artifact(version_dir, digest, required, model_name, version)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return version_dir


def _check_same_artifact(
    version_dir: Path, digest: str, required: tuple[str, ...], model_name: str, version: int
) -> None:
    digest_file = version_dir / DIGEST_FILE
    existing = digest_file.read_text().strip() if digest_file.is_file() else None
    complete = all((version_dir / name).is_file() for name in required)
    if existing != digest or not complete:
        raise ExportConflictError(
            f"Version {version} of Triton model {model_name!r} already exists in "
            f"{version_dir.parent} with different weights; versions are immutable. Export under "
            "a new version number, or unload the model and delete the folder first."
        )
