"""Multiple-testing correction against scipy and hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from monitors.errors import MonitorInputError
from monitors.stats import adjust_pvalues


def test_bh_equals_scipy_false_discovery_control() -> None:
    p = np.random.default_rng(3).uniform(size=40) ** 2
    np.testing.assert_allclose(
        adjust_pvalues(p, "bh"), stats.false_discovery_control(p, method="bh"), rtol=1e-12
    )


def test_bh_hand_example_keeps_input_order() -> None:
    # Sorted: 0.01*4/1=0.04, 0.02*4/2=0.04, 0.03*4/3=0.04, 0.5*4/4=0.5.
    np.testing.assert_allclose(
        adjust_pvalues([0.5, 0.03, 0.01, 0.02], "bh"), [0.5, 0.04, 0.04, 0.04]
    )


def test_bonferroni_multiplies_and_clips() -> None:
    np.testing.assert_allclose(adjust_pvalues([0.01, 0.2, 0.6], "bonferroni"), [0.03, 0.6, 1.0])


def test_empty_and_invalid() -> None:
    assert adjust_pvalues([], "bh").size == 0
    with pytest.raises(MonitorInputError, match="p-values"):
        adjust_pvalues([0.1, float("nan")], "bh")
    with pytest.raises(MonitorInputError, match="p-values"):
        adjust_pvalues([1.2], "bonferroni")
    with pytest.raises(MonitorInputError, match="Unknown correction"):
        adjust_pvalues([0.1], "holm")  # type: ignore[arg-type]
