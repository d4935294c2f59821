"""What radwatch records about an acquisition, whatever the model: the DICOM metadata columns
and the raw-image statistics that every prediction carries and every reference profile keeps.

These are the columns the drift monitors test; they do not depend on the model's spec.
"""

from __future__ import annotations

from typing import Final

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
