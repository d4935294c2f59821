"""Subgroup fairness: per-group metrics with n and bootstrap intervals, gaps, minimum-n rule."""

from monitors.fairness.report import subgroup_report
from monitors.fairness.types import FairnessReport, GapResult, GroupResult, WorstVsRest

__all__ = ["FairnessReport", "GapResult", "GroupResult", "WorstVsRest", "subgroup_report"]
