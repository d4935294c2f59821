"""Errors raised by the pure statistical monitors.

``monitors`` must not import the service layer, so it has its own small hierarchy. The service
and CLI translate :class:`MonitorInputError` into a 422 response or exit code 2; subclassing
``ValueError`` keeps plain-Python callers (notebooks, benchmarks) working with ``except
ValueError``. Messages name the column and the fix, never a row's contents, so they carry no
patient or study identifiers.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base class for every error a monitor raises on purpose."""


class MonitorInputError(MonitorError, ValueError):
    """The data handed to a monitor cannot be tested as given (missing column, all-NaN column,
    constant column, mismatched types, too few samples, bad configuration)."""
