"""Triton Python-backend model: runs a ``torch.export`` archive of RadiographNet on CPU.

Copied verbatim into ``<repository>/<model>/<version>/model.py`` by
:func:`pipelines.export_triton.export_model`; the archive ``model.pt2`` sits next to it.

Tensor names come from the model config (the first input; the outputs in the order
probabilities, embedding) so that ``pipelines.contract`` stays their only source. It imports only
the standard library, numpy, torch and (inside the stub, lazily) Triton's
``triton_python_backend_utils``, because the stub's interpreter has nothing of radwatch on its
path. Importing this file outside Triton is harmless: nothing runs at import time.

Threads: a CPU instance uses ``TORCH_NUM_THREADS`` threads (model config parameter, written by the
exporter, default 1), overridden by the ``RADWATCH_TORCH_THREADS`` environment variable of the
server. One thread per instance is the default because Triton scales by instances and by
dynamic batching, and oversubscribed intra-op threads slow every instance down.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Any

import numpy as np
import torch

ARCHIVE_NAME = "model.pt2"
THREADS_PARAMETER = "TORCH_NUM_THREADS"
THREADS_ENV = "RADWATCH_TORCH_THREADS"


def _thread_count(model_config: dict[str, Any]) -> int:
    raw = os.environ.get(THREADS_ENV)
    if not raw:
        param = model_config.get("parameters", {}).get(THREADS_PARAMETER, {})
        raw = param.get("string_value") or "1"
    threads = int(raw)
    if threads < 1:
        raise ValueError(f"{THREADS_ENV}/{THREADS_PARAMETER} must be >= 1, got {raw!r}")
    return threads


class TritonPythonModel:
    """The class name and method names are fixed by the Triton Python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        model_config = json.loads(args["model_config"])
        threads = _thread_count(model_config)
        torch.set_num_threads(threads)
        # Only settable before the first parallel region; a fresh stub process has not run one.
        with contextlib.suppress(RuntimeError):
            torch.set_num_interop_threads(1)
        archive = os.path.join(args["model_repository"], args["model_version"], ARCHIVE_NAME)
        self.module = torch.export.load(archive).module()
        self.input_name = model_config["input"][0]["name"]
        self.probs_name, self.embedding_name = (o["name"] for o in model_config["output"])
        self.model_name = args["model_name"]
        self.model_version = args["model_version"]

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run all requests of one dynamic batch as a single forward pass.

        Triton guarantees the summed batch is at most ``max_batch_size``, which is also the
        archive's largest dynamic batch. A failure answers every request with the error instead
        of crashing the stub.
        """
        import triton_python_backend_utils as pb_utils

        arrays = [
            pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy()
            for request in requests
        ]
        sizes = [int(a.shape[0]) for a in arrays]
        try:
            batch = torch.from_numpy(np.ascontiguousarray(np.concatenate(arrays, axis=0)))
            with torch.inference_mode():
                probs, embedding = self.module(batch.to(torch.float32))
            probs_np = probs.detach().cpu().numpy().astype(np.float32, copy=False)
            emb_np = embedding.detach().cpu().numpy().astype(np.float32, copy=False)
        except Exception as exc:  # every request gets the reason, the stub keeps running
            error = pb_utils.TritonError(
                f"{self.model_name} v{self.model_version} failed: {type(exc).__name__}: {exc}"
            )
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for size in sizes:
            stop = start + size
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(
                            self.probs_name, np.ascontiguousarray(probs_np[start:stop])
                        ),
                        pb_utils.Tensor(
                            self.embedding_name, np.ascontiguousarray(emb_np[start:stop])
                        ),
                    ]
                )
            )
            start = stop
        return responses

    def finalize(self) -> None:
        del self.module
