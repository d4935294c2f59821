"""The shapes and names that the pipelines, the Triton model and the gateway agree on.

Everything that crosses a process boundary (the Triton model repository, the gateway, the
reference profile) uses these constants, so a change here is a change of the wire format.
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

#: Acquisition metadata columns recorded with every prediction and kept in the reference profile.
CATEGORICAL_METADATA: Final[tuple[str, ...]] = (
    "manufacturer",
    "manufacturer_model",
    "view_position",
    "sex",
    "race_ethnicity",
)
NUMERIC_METADATA: Final[tuple[str, ...]] = ("kvp", "age")

#: Image statistics the gateway computes on the raw (pre-resize) pixel array, scaled to [0, 1].
IMAGE_STATS: Final[tuple[str, ...]] = ("mean", "std", "p01", "p99", "height", "width")
