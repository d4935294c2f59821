"""Prometheus exposition of the whole system: ``GET /metrics`` and the collector that reads every
domain's counts at scrape time. It sits above the domains (it reads all of them); the counters
that domains increment are the leaf package :mod:`services.metrics`."""
