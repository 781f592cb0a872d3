"""Helpers shared by the tests and the benchmarks: child processes, the loopback fake of
Scenario's API and the truth of its demo account, the exporter process as the process
tests read it, stand-ins for unit tests, the backfill tests' settings, hypothesis
strategies of upstream bodies, clocks, waiting, web calls, a PKI, the web config files of
the web tests, the one exposition parser, real Prometheus servers, the committed
dashboards as the tests read them, and the Helm chart rendered by the real ``helm``.
Only :mod:`testkit.tools` imports pytest."""
