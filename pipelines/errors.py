"""Errors of the pipelines: bad input a caller can fix, with a message that says how.

The pipelines know nothing of HTTP; the service layer turns these into its domain errors
(:func:`services.core.errors.pipeline_errors`), which carry the status codes.
"""

from __future__ import annotations


class PipelineError(ValueError):
    """Base class: the message names the problem and the fix."""


class InvalidImageError(PipelineError):
    """An image array the model cannot take (shape, dtype, non-finite pixels)."""


class InvalidDicomError(PipelineError):
    """A DICOM file radwatch cannot read or does not support."""


class InvalidExportError(PipelineError):
    """A model, name or version that cannot be exported to a Triton model repository."""


class ExportConflictError(PipelineError):
    """The version already exists in the model repository with other weights."""
