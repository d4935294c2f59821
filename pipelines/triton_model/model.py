"""Triton Python-backend model: serves any exported model version on CPU, as its config says.

Copied verbatim into ``<repository>/<model>/<version>/model.py`` by
:mod:`pipelines.export_triton`; the artifact sits next to it. The config (written from the
model's spec) says everything this file needs:

* ``RADWATCH_RUNTIME``: ``torch-export`` (a ``torch.export`` archive) or ``onnx`` (run by
  onnxruntime, imported lazily so a torch model needs no onnxruntime);
* ``RADWATCH_ARTIFACT``: the artifact's file name in the version folder;
* ``TORCH_NUM_THREADS``: intra-op threads of one instance, for torch and onnxruntime alike,
  overridden by the server's ``RADWATCH_TORCH_THREADS`` environment variable;
* the first input's name and the outputs' names, in order.

Configs written before the runtime was a parameter have none; they mean ``torch-export`` and
``model.pt2``, the only format there was. A torch model that returns a tuple gives the config's
outputs in order; one that returns a dict gives them by name (as an ONNX model does).

It imports only the standard library, numpy, torch, onnxruntime (for ONNX) and, inside the stub,
Triton's ``triton_python_backend_utils``, because the stub's interpreter has nothing of radwatch
on its path. Importing this file outside Triton is harmless: nothing runs at import time.

One thread per instance is the default because Triton scales by instances and by dynamic
batching, and oversubscribed intra-op threads slow every instance down.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

RUNTIME_PARAMETER = "RADWATCH_RUNTIME"
ARTIFACT_PARAMETER = "RADWATCH_ARTIFACT"
THREADS_PARAMETER = "TORCH_NUM_THREADS"
THREADS_ENV = "RADWATCH_TORCH_THREADS"
DEFAULT_RUNTIME = "torch-export"
DEFAULT_ARTIFACT = "model.pt2"

Array = npt.NDArray[np.float32]
#: A loaded model: one float32 batch in, every output by name out.
Runner = Callable[[Array], dict[str, Array]]


def _parameter(model_config: Mapping[str, Any], key: str, default: str) -> str:
    value = model_config.get("parameters", {}).get(key, {}).get("string_value")
    return str(value) if value else default


def _thread_count(model_config: Mapping[str, Any]) -> int:
    raw = os.environ.get(THREADS_ENV) or _parameter(model_config, THREADS_PARAMETER, "1")
    threads = int(raw)
    if threads < 1:
        raise ValueError(f"{THREADS_ENV}/{THREADS_PARAMETER} must be >= 1, got {raw!r}")
    return threads


def _as_float32(value: Any) -> Array:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)


def _by_name(result: Any, names: Sequence[str]) -> dict[str, Array]:
    """Name a model's result: a mapping by name, else a sequence (or one tensor) in order."""
    if isinstance(result, Mapping):
        if missing := [n for n in names if n not in result]:
            raise KeyError(f"the model returned {sorted(result)}, not {missing}")
        return {n: _as_float32(result[n]) for n in names}
    values = [result] if isinstance(result, torch.Tensor) else list(result)
    if len(values) != len(names):
        raise ValueError(f"the model returned {len(values)} outputs; the config has {len(names)}")
    return {n: _as_float32(v) for n, v in zip(names, values, strict=True)}


def torch_runner(path: str, output_names: Sequence[str], threads: int) -> Runner:
    """Load a ``torch.export`` archive; run it under ``inference_mode``."""
    torch.set_num_threads(threads)
    # Only settable before the first parallel region; a fresh stub process has not run one.
    with contextlib.suppress(RuntimeError):
        torch.set_num_interop_threads(1)
    module = torch.export.load(path).module()

    def run(batch: Array) -> dict[str, Array]:
        with torch.inference_mode():
            return _by_name(module(torch.from_numpy(batch)), output_names)

    return run


def onnx_runner(path: str, input_name: str, output_names: Sequence[str], threads: int) -> Runner:
    """Open an ONNX model in onnxruntime on the CPU provider, ``threads`` intra-op threads."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    names = list(output_names)

    def run(batch: Array) -> dict[str, Array]:
        return _by_name(session.run(names, {input_name: batch}), names)

    return run


def load_runner(model_config: Mapping[str, Any], version_dir: str) -> Runner:
    """The runner the config asks for, over the artifact in ``version_dir``."""
    runtime = _parameter(model_config, RUNTIME_PARAMETER, DEFAULT_RUNTIME)
    path = os.path.join(version_dir, _parameter(model_config, ARTIFACT_PARAMETER, DEFAULT_ARTIFACT))
    threads = _thread_count(model_config)
    output_names = [o["name"] for o in model_config["output"]]
    if runtime == "torch-export":
        return torch_runner(path, output_names, threads)
    if runtime == "onnx":
        return onnx_runner(path, model_config["input"][0]["name"], output_names, threads)
    raise ValueError(f"{RUNTIME_PARAMETER} must be 'torch-export' or 'onnx', got {runtime!r}")


class TritonPythonModel:
    """The class name and method names are fixed by the Triton Python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        model_config = json.loads(args["model_config"])
        version_dir = os.path.join(args["model_repository"], args["model_version"])
        self.run = load_runner(model_config, version_dir)
        self.input_name = model_config["input"][0]["name"]
        self.output_names = [o["name"] for o in model_config["output"]]
        self.model_name = args["model_name"]
        self.model_version = args["model_version"]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run all requests of one dynamic batch as a single forward pass.

        Triton guarantees the summed batch is at most ``max_batch_size``, which the artifact
        must accept. A failure answers every request with the error instead of crashing the
        stub; each response carries every configured output, by name.
        """
        import triton_python_backend_utils as pb_utils

        arrays = [
            pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            for request in requests
        ]
        sizes = [int(a.shape[0]) for a in arrays]
        try:
            batch = np.ascontiguousarray(np.concatenate(arrays, axis=0), dtype=np.float32)
            outputs = self.run(batch)
            for name, value in outputs.items():
                if value.shape[0] != batch.shape[0]:
                    raise ValueError(
                        f"output {name!r} has {value.shape[0]} rows for a batch of {len(batch)}"
                    )
        except Exception as exc:  # every request gets the reason, the stub keeps running
            error = pb_utils.TritonError(
                f"{self.model_name} v{self.model_version} failed: {type(exc).__name__}: {exc}"
            )
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            stop = start + size
            tensors = [
                pb_utils.Tensor(name, np.ascontiguousarray(outputs[name][start:stop]))
                for name in self.output_names
            ]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = stop
        return responses

    def finalize(self) -> None:
        del self.run
