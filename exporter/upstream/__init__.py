"""Scenario's API: the response schema, summing a response, the HTTP client, the one
day-piece splitter, politeness (the hourly cap and the back-off), and the demo account that
stands in for the API. Imports only :mod:`exporter.core`."""
