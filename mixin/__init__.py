"""The monitoring mixin of scenario-exporter: its Grafana dashboards, recording rules
and alerts, generated from one source.

``python -m mixin`` writes ``dashboards/*.json``, ``rules/*.yml`` and the Helm
chart's copies of them; ``python -m mixin --check`` says which differ. The knobs
are in ``mixin/config.py``, the PromQL idioms in ``mixin/promql.py``. This is
developer tooling, run from a clone of the repository: it is not part of the
installed package.
"""
