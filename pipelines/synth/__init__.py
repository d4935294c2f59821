"""Synthetic chest radiographs with controllable sites, vendors, populations and shifts.

Public API: :class:`RadiographGenerator`, the spec dataclasses and the defaults. See
``generator`` for the determinism guarantees and ``render`` for how findings are drawn.
"""

from __future__ import annotations

from pipelines.contract import FINDINGS
from pipelines.synth.generator import RadiographGenerator, finding_probabilities
from pipelines.synth.specs import (
    DEFAULT_SITES,
    DEFAULT_VENDORS,
    SUBGROUP_ATTRIBUTES,
    ShiftSpec,
    SiteSpec,
    Study,
    VendorSpec,
)

__all__ = [
    "DEFAULT_SITES",
    "DEFAULT_VENDORS",
    "FINDINGS",
    "SUBGROUP_ATTRIBUTES",
    "RadiographGenerator",
    "ShiftSpec",
    "SiteSpec",
    "Study",
    "VendorSpec",
    "finding_probabilities",
]
