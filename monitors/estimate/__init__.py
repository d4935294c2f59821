"""Label-free performance estimation from calibrated scores (CBPE)."""

from monitors.estimate.calibrators import CalibrationMethod, Calibrator, fit_calibrator
from monitors.estimate.cbpe import EstimateReport, estimate_performance, expected_auroc

__all__ = [
    "CalibrationMethod",
    "Calibrator",
    "EstimateReport",
    "estimate_performance",
    "expected_auroc",
    "fit_calibrator",
]
