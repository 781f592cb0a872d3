"""What Prometheus reads: the business families, the exporter's own series, the one
collector entry both the server and the backfill call, and ``/metrics`` itself (negotiated,
filtered, encoded, compressed, cached). Imports only :mod:`exporter.core`."""
