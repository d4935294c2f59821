"""Promotion flows: each owns its transactions and spans Triton, MLflow and the database.

- :mod:`.saga`: the all-or-nothing machinery (undo stack, alias moves, the routing row lock);
- :mod:`.stages`: start (shadow), canary, champion;
- :mod:`.rollback`: rollback by hand, the rollback trigger, and the automatic watch.
"""

from services.promotion.flows.rollback import ROLLBACK_MONITOR, rollback, rollback_trigger, watch
from services.promotion.flows.stages import StageProgress, advance, progress, start

__all__ = [
    "ROLLBACK_MONITOR",
    "StageProgress",
    "advance",
    "progress",
    "rollback",
    "rollback_trigger",
    "start",
    "watch",
]
