"""JSON-safe conversion for result dictionaries (plain Python types, non-finite -> None).

Kept here rather than imported from ``monitors.drift._json``: importing ``monitors.drift``
loads torch (about 3 s), which a ``radwatch monitor performance`` call does not need.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays -> Python types; NaN and infinities -> None (JSON has neither)."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, str):
        return value
    if isinstance(value, Sequence):
        return [json_safe(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    return value
