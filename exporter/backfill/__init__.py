"""``scenario-exporter backfill``: past periods from upstream, replayed as the live
exporter would have served them, pushed by remote write or written as OpenMetrics for
promtool, or as FOCUS rows. Never imports :mod:`exporter.live`."""
