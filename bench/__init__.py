"""Benchmarks of scenario-exporter: scrape and refresh cost against their floors.

Every figure is measured as a ratio against its floor in the same run (shared
machines are noisy: absolute times drift, ratios hold). The exporter runs for
real, as ``python -m exporter`` against the loopback fake of the upstream API
(:mod:`testkit.fake_upstream`), so the real client, cache, collector and HTTP
server are what is measured. Run ``python -m bench`` (full, a few minutes) or
``python -m bench --quick`` (small sizes, short durations; what CI runs).
"""
