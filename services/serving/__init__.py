"""Serving domain: the Triton server process, the inference client and traffic routing.

Import the adapters from their modules (``services.serving.client``, ``services.serving.server``);
this package imports nothing at load time so that importing a sibling module stays cheap.
"""
