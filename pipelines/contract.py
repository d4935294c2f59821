"""The built-in model's shapes and names (RadiographNet, :mod:`pipelines.model`).

Only the built-in model's own code reads these: :func:`pipelines.model.builtin_spec` turns them
into a :class:`~pipelines.spec.ModelSpec`, and everything else (the exporter, the gateway, the
monitors) reads the spec, so an imported model with other shapes goes through the same code.
"""

from __future__ import annotations

from typing import Final

#: Side of the square image the encoder sees, in pixels. The gateway resizes every input to it.
IMAGE_SIZE: Final = 128

#: Findings the classifier predicts, in output order. One sigmoid probability each.
FINDINGS: Final[tuple[str, ...]] = ("effusion", "nodule", "cardiomegaly", "pneumothorax")

#: Width of the encoder embedding the monitors compare against the reference profile.
EMBEDDING_DIM: Final = 128

#: Triton tensor names. Input is FP32 [batch, 1, IMAGE_SIZE, IMAGE_SIZE], already normalised by
#: :func:`pipelines.preprocess.to_model_input`; outputs are FP32 [batch, len(FINDINGS)]
#: probabilities and FP32 [batch, EMBEDDING_DIM] embeddings.
TRITON_INPUT: Final = "IMAGE"
TRITON_OUTPUT_PROBS: Final = "PROBS"
TRITON_OUTPUT_EMBEDDING: Final = "EMBEDDING"

#: Largest batch the Triton config accepts; dynamic batching groups requests up to it.
TRITON_MAX_BATCH: Final = 64
