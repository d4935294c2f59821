"""Printing p-values: a bound below the float64 floor, never 0."""

from __future__ import annotations

import pytest

from monitors.stats import P_FLOOR, format_p


@pytest.mark.parametrize(
    ("p", "text"),
    [
        (0.0, "p < 1e-16"),
        (1e-300, "p < 1e-16"),
        (P_FLOOR / 2, "p < 1e-16"),
        (3.14e-9, "p = 3.1e-09"),
        (0.0123, "p = 0.012"),
        (0.5, "p = 0.500"),
        (None, "p = n/a"),
        (float("nan"), "p = n/a"),
    ],
)
def test_p_values_print_as_a_bound_below_the_floor(p: float | None, text: str) -> None:
    assert format_p(p) == text
