"""The web layer: the HTTP server and what ``--web.config.file`` asks of it.

One job per module, data flowing one way:

- :mod:`exporter.web.schema`: the file's format (YAML, keys, types) and its errors;
- :mod:`exporter.web.tls`: ``tls_server_config``, validated, and the SSL contexts;
- :mod:`exporter.web.config`: the whole file validated into a :class:`WebConfig`;
- :mod:`exporter.web.auth`: basic-auth checks (bounded, fair, cached, no timing oracle);
- :mod:`exporter.web.security`: reloading the files, and the WSGI guard (auth, headers);
- :mod:`exporter.web.server`: Hypercorn serving the application, with every limit.
"""
