"""The append-only, hash-chained audit trail: every state change of a model's lifecycle appends
one record in the same transaction as the change (see :mod:`services.audit.service`)."""
