"""Performance of a model on labelled cases, every metric with its n and confidence interval."""

from monitors.performance.auroc import auroc_delong, delong_compare, midranks, non_inferiority
from monitors.performance.calibration import calibration
from monitors.performance.report import evaluate_performance
from monitors.performance.threshold import confusion_metrics, wilson_interval
from monitors.performance.types import (
    CalibrationBin,
    CalibrationResult,
    DelongComparison,
    MetricCI,
    NonInferiorityResult,
    PerformanceReport,
)

__all__ = [
    "CalibrationBin",
    "CalibrationResult",
    "DelongComparison",
    "MetricCI",
    "NonInferiorityResult",
    "PerformanceReport",
    "auroc_delong",
    "calibration",
    "confusion_metrics",
    "delong_compare",
    "evaluate_performance",
    "midranks",
    "non_inferiority",
    "wilson_interval",
]
