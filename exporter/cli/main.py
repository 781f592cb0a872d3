"""Command line: ``scenario-exporter [flags]`` serves; ``scenario-exporter check`` tests keys.

Exit codes: 0 success, 1 runtime failure (``check`` found a problem, the port
is taken), 2 invalid configuration (one line on stderr naming the setting).
"""

from __future__ import annotations

import argparse
import logging
import platform
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, NoReturn

import httpx

from exporter import __version__
from exporter.config.load import settings_from_environment
from exporter.config.options import ACCOUNT_OPTIONS, CREDENTIAL_HELP, OPTIONS
from exporter.config.settings import Settings
from exporter.core.durations import format_duration
from exporter.core.errors import ConfigError
from exporter.core.logs import configure_logging, secret_variants

log = logging.getLogger("exporter")

DESCRIPTION = """\
Prometheus exporter for Scenario (scenario.com) usage and Creative Unit billing.

Reads GET /v1/usages for the current billing period and exposes period-to-date
counters per model, user, usage name, asset kind and NSFW label on /metrics.
Upstream data is cached (--cache.ttl) and shared by all scrapes, so any number
of scrapers cannot overload the API.

Commands:
  (none)   serve /metrics
  check    call upstream once per account, print a summary, exit 0 or 1
  backfill write past periods as OpenMetrics for promtool (docs/backfill.md)
"""

EPILOG = f"""\
credentials (environment):
  SCENARIO_API_KEY, SCENARIO_API_SECRET     API key and secret of the account
  SCENARIO_SDK_API_KEY, SCENARIO_SDK_API_SECRET
                                            used when the two above are unset
  SCENARIO_API_KEY_FILE, SCENARIO_API_SECRET_FILE
                                            read the key, the secret from these files
                                            (re-read at each refresh: rotation applies)
  several accounts: list them in --config.file (accounts: [...])

every flag can also be set as SCENARIO_EXPORTER_<FLAG> (e.g.
SCENARIO_EXPORTER_CACHE_TTL=10m) or in the --config.file YAML (cache: {{ttl: 10m}});
flags win over the environment, which wins over the file.

without credentials: {CREDENTIAL_HELP}.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, with errors on one line and exit code 2 (no usage dump)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"scenario-exporter: {message}\n")
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="scenario-exporter", description=DESCRIPTION, epilog=EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter,
                     argument_default=argparse.SUPPRESS)
    parser.add_argument("--version", action="version",
                        version=f"scenario-exporter {__version__} "
                                f"(python {platform.python_version()})")
    parser.add_argument("--config.file", dest="config.file", metavar="FILE",
                        help="YAML file with settings and an accounts list "
                             "(env SCENARIO_EXPORTER_CONFIG_FILE).")
    for option in OPTIONS + ACCOUNT_OPTIONS:
        if option.kind == "bool":
            parser.add_argument(f"--{option.flag}", dest=option.flag,
                                action=argparse.BooleanOptionalAction,
                                help=f"{option.help} (env {option.env})")
        else:
            parser.add_argument(f"--{option.flag}", dest=option.flag, metavar=option.metavar,
                                help=f"{option.help} (env {option.env})")
    return parser


def parse(argv: Sequence[str]) -> tuple[str, Settings]:
    """Return the command (``serve``, ``check`` or ``backfill``) and validated settings."""
    command, settings, _ = parse_command(argv)
    return command, settings


def parse_command(argv: Sequence[str]) -> tuple[str, Settings, dict[str, Any]]:
    """The command, validated settings, and the command's own arguments (backfill's)."""
    args = list(argv)
    command = "serve"
    if args and args[0] in ("check", "backfill"):
        command, args = args[0], args[1:]
    parser = build_parser()
    if command == "backfill":
        from exporter.backfill import run as backfill

        backfill.add_arguments(parser)
    namespace = vars(parser.parse_args(args))
    config_file = namespace.pop("config.file", None)
    own = {}
    if command == "backfill":
        own = backfill.backfill_arguments(namespace)
    return command, settings_from_environment(namespace, config_file), own


def _secrets(settings: Settings) -> set[str]:
    found: set[str] = set()
    for account in settings.accounts:
        try:
            found |= secret_variants(account.key(), account.secret())
        except ValueError:
            continue
    return found


def _transport(settings: Settings) -> httpx.BaseTransport | None:
    if not settings.demo:
        return None
    from exporter.config.accounts import DEMO_API_KEY, DEMO_API_SECRET
    from exporter.upstream.demo import DemoAccount, demo_transport

    return demo_transport(DemoAccount(), DEMO_API_KEY, DEMO_API_SECRET)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scenario-exporter`` command."""
    try:
        command, settings, own = parse_command(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        sys.stderr.write(f"scenario-exporter: {exc}\n")
        return 2
    configure_logging(settings.log_level, settings.log_format, _secrets(settings))
    if command == "check":
        from exporter.check.command import run_check

        return run_check(settings, _transport(settings), sys.stdout)
    if command == "backfill":
        from exporter.backfill.run import run_backfill_command

        return run_backfill_command(settings, own, _transport(settings))
    return serve(settings)


def serve(settings: Settings) -> int:
    """Serve until SIGTERM or SIGINT; returns the exit code."""
    from exporter.live.app import create_app
    from exporter.live.service import UsageExporter
    from exporter.web.server import ServerLimits, create_server, serve_in_thread

    app: Any
    ssl_context = None
    security = None
    exporter = UsageExporter(settings, transport=_transport(settings))
    app = create_app(exporter)
    if settings.web_config_file is not None:
        from exporter.web.schema import WebConfigError
        from exporter.web.security import HEALTH_PATHS, WebSecurity

        open_paths = HEALTH_PATHS if settings.web_health_without_auth else frozenset()
        try:
            security = WebSecurity.from_file(str(settings.web_config_file),
                                             open_paths=open_paths)
        except WebConfigError as exc:
            sys.stderr.write(f"scenario-exporter: {exc}\n")
            return 2
        ssl_context = security.ssl_context()
        app = security.wrap(app)
    try:
        server = create_server(settings.listen_address, app, ssl_context, ServerLimits(
            header_timeout=settings.web_header_timeout, max_threads=settings.web_max_threads))
    except OSError as exc:
        sys.stderr.write(f"scenario-exporter: --web.listen-address {settings.listen_address}: "
                         f"{exc.strerror or exc}\n")
        return 1

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if security is not None:
        web_security = security

        def on_hangup(signum: int, frame: FrameType | None) -> None:
            # Reload off the signal handler: it may wait for a reload in progress.
            threading.Thread(target=web_security.reload, name="sighup", daemon=True).start()

        signal.signal(signal.SIGHUP, on_hangup)
    host, port = str(server.server_address[0]), int(server.server_address[1])
    log.info("listening", extra={"fields": {
        "address": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "port": port, "tls": ssl_context is not None, "version": __version__,
        "accounts": ",".join(a.name for a in settings.accounts),
        "demo": settings.demo, "cache_ttl": format_duration(settings.cache_ttl)}})
    exporter.start()
    thread = serve_in_thread(server)
    stop.wait()
    log.info("shutting down")
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
    exporter.close()
    return 0
