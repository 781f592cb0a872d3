"""Prometheus exporter for Scenario usage and Creative Unit billing data."""

__version__ = "0.1.0"
