"""The long-running exporter: the refresh scheduler, the WSGI application (``/metrics``,
the landing page, health) and the composition root that wires and serves them."""
