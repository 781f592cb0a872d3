"""The floor of the scrape figures: a minimal ``http.server.ThreadingHTTPServer``.

It serves fixed bytes (captured from the exporter) per path, with the same
content headers, so that the exporter's cost can be compared with the cost of
just sending those bytes from Python. Like the exporter's WSGI server, it speaks
HTTP/1.0 (the stdlib default) and closes the connection after each response.

``python -m bench.floor ROUTES.json BACKLOG nodelay|nagle`` prints its port on
stdout and serves until SIGTERM. The socket settings are the exporter's own, so
that the figures compare the cost of serving, not TCP settings: BACKLOG is the
listen queue (``request_queue_size``; the stdlib default of 5 makes a burst of
connections wait for SYN retransmissions of 1 s, 3 s, 7 s...), and ``nodelay``
turns Nagle's algorithm off as the exporter's handler does.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any


def main(spec_file: str, backlog: int, nodelay: bool) -> None:
    spec = json.loads(Path(spec_file).read_text())
    routes = {path: (Path(entry["file"]).read_bytes(), entry["headers"])
              for path, entry in spec.items()}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            body, headers = routes.get(self.path, (b"Not found\n", {}))
            self.send_response(200 if self.path in routes else 404)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    Handler.disable_nagle_algorithm = nodelay

    class Server(ThreadingHTTPServer):
        request_queue_size = backlog

    server = Server(("127.0.0.1", 0), Handler)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    print(server.server_address[1], flush=True)
    server.serve_forever()
    server.server_close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "nodelay")
