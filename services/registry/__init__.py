"""Registry domain: the model-registry role (``protocols``), its MLflow adapter and services.

Nothing is imported here so that importing the package does not import MLflow.
"""
