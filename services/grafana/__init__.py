"""Grafana dashboards and Prometheus alerting rules as code.

``dashboards`` builds the three dashboards with ``grafana-foundation-sdk``, ``rules`` builds the
alerting rules, ``promql`` checks that every expression names only metrics and labels from
:mod:`services.metrics.catalog`, ``generate`` writes both to the Helm chart and ``provision``
uploads the dashboards to a Grafana server through ``grafana-client``.
"""
