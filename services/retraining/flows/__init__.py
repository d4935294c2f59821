"""Retraining flows: the units of work that span domains and own their transactions.

- :mod:`.runs`: a retraining run (probe refit of the built-in model, its dossier, the sign-off
  request), executed by a ``training`` worker;
- :mod:`.candidates`: a candidate registered by hand (retraining ``none`` or ``external``),
  judged on a sequestered evaluation set through Triton.
"""

from services.retraining.flows.runs import execute_run

__all__ = ["execute_run"]
