"""Alert lifecycle (acknowledge, resolve) and outgoing signed webhooks.

``service`` changes alerts and writes the webhook outbox in the caller's transaction,
``webhooks`` signs and sends the outbox rows, ``dispatch`` nudges a worker after a commit, and
``tasks`` is the Celery entry point of the delivery sweep.
"""
