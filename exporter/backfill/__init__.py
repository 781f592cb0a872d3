"""``scenario-exporter backfill``: past periods from upstream, replayed as the live
exporter would have served them, written as OpenMetrics for promtool. Never imports
:mod:`exporter.live`."""
