"""Helpers shared by the tests and the benchmarks: child processes, the loopback fake of
Scenario's API and the truth of its demo account, clocks, waiting, web calls, a PKI, the
web config files of the web tests, the one exposition parser, real Prometheus servers,
the committed dashboards as the tests read them, and the Helm chart rendered by the real
``helm``. Only :mod:`testkit.tools` imports pytest."""
