"""The command line: ``scenario-exporter [serve] | check | backfill``, each with its flags.

Every command takes the exporter's settings (flags, environment, YAML file);
``backfill`` adds its own. The command's outcome becomes an exit code in one
place, :func:`exporter.cli.exit.run_program`: 0 success, 1 runtime failure
(``check`` found a problem, the port is taken), 2 invalid configuration (one
line on stderr naming the setting), 130 interrupted.
"""

from __future__ import annotations

import argparse
import platform
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from exporter import __version__
from exporter.backfill import command as backfill_command
from exporter.cli.exit import PROGRAM, run_program
from exporter.config.load import settings_from_environment
from exporter.config.options import ACCOUNT_OPTIONS, CREDENTIAL_HELP, OPTIONS
from exporter.config.settings import Settings
from exporter.core.errors import ConfigError
from exporter.core.logs import configure_logging, secret_variants

DESCRIPTION = """\
Prometheus exporter for Scenario (scenario.com) usage and Creative Unit billing.

Reads GET /v1/usages for the current billing period and exposes period-to-date
counters per model, user, usage name, asset kind and NSFW label on /metrics.
Upstream data is cached (--cache.ttl) and shared by all scrapes, so any number
of scrapers cannot overload the API.
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
flags win over the environment, which wins over the file; the SDK's
SCENARIO_BASE_URL applies when none of them sets --scenario.api-url.

without credentials: {CREDENTIAL_HELP}.
"""

Transport = httpx.BaseTransport | None


def _serve(settings: Settings, arguments: dict[str, Any], transport: Transport) -> bool:
    from exporter.live.service import serve

    return serve(settings, transport)


def _check(settings: Settings, arguments: dict[str, Any], transport: Transport) -> bool:
    from exporter.check.command import run_check

    return run_check(settings, transport, sys.stdout)


def _backfill(settings: Settings, arguments: dict[str, Any], transport: Transport) -> bool:
    from exporter.backfill.run import run

    return run(settings, arguments, transport)


@dataclass(frozen=True)
class Command:
    """A subcommand: what it does, its own flags, and how it runs."""

    help: str
    run: Callable[[Settings, dict[str, Any], Transport], bool]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
    # Secrets its own flags point at (files it reads), hidden from the logs like the
    # accounts' credentials.
    secrets: Callable[[dict[str, Any]], set[str]] | None = None


COMMANDS: dict[str, Command] = {
    "serve": Command("serve /metrics (the default when no command is given)", _serve),
    "check": Command("call upstream once per account, print a summary, exit 0 or 1", _check),
    "backfill": Command("past periods (a year by default) pushed by remote write, or as "
                        "OpenMetrics for promtool, or FOCUS rows (docs/backfill.md)",
                        _backfill, backfill_command.add_arguments,
                        backfill_command.secrets),
}


class _Parser(argparse.ArgumentParser):
    """argparse, whose errors are configuration errors: one line, exit code 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(message)


def _add_settings(parser: argparse.ArgumentParser) -> None:
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


def build_parser() -> argparse.ArgumentParser:
    """The parser: one subcommand each with the settings' flags (which the top-level help
    shows too, as ``scenario-exporter [flags]`` serves)."""
    style: dict[str, Any] = {"formatter_class": argparse.RawDescriptionHelpFormatter,
                             "argument_default": argparse.SUPPRESS, "epilog": EPILOG}
    parser = _Parser(prog=PROGRAM, description=DESCRIPTION,
                     usage=f"%(prog)s [{'|'.join(COMMANDS)}] [flags]", **style)
    parser.add_argument("--version", action="version",
                        version=f"{PROGRAM} {__version__} (python {platform.python_version()})")
    _add_settings(parser)
    commands = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, prog=f"{PROGRAM} {name}", help=command.help,
                                  description=command.help, **style)
        _add_settings(sub)
        if command.add_arguments is not None:
            command.add_arguments(sub)
    return parser


def _secrets(settings: Settings) -> set[str]:
    found: set[str] = set()
    for account in settings.accounts:
        try:
            found |= secret_variants(account.key(), account.secret())
        except ValueError:
            continue
    return found


def _transport(settings: Settings) -> Transport:
    """The built-in demo upstream with --demo; None: Scenario's API over the network."""
    if not settings.demo:
        return None
    from exporter.config.accounts import DEMO_API_KEY, DEMO_API_SECRET
    from exporter.upstream.demo import DemoAccount
    from exporter.upstream.demo_api import demo_transport

    return demo_transport(DemoAccount(), DEMO_API_KEY, DEMO_API_SECRET)


@dataclass(frozen=True)
class Invocation:
    """What the command line asks for: the command, validated settings, its own flags."""

    command: str
    settings: Settings
    arguments: dict[str, Any]


def parse(argv: Sequence[str]) -> Invocation:
    """Read *argv*, the environment and the YAML file; bad input raises :class:`ConfigError`."""
    args = list(argv)
    # Without a command, serve: chosen here rather than by argparse, which would
    # take the value of a mistyped flag for the name of a command.
    if not args or args[0] not in (*COMMANDS, "-h", "--help", "--version"):
        args = ["serve", *args]
    arguments = vars(build_parser().parse_args(args))
    command = arguments.pop("command")
    settings = settings_from_environment(arguments, arguments.pop("config.file", None))
    return Invocation(command, settings, arguments)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``scenario-exporter`` command; returns the exit code."""

    def program() -> bool:
        invocation = parse(sys.argv[1:] if argv is None else argv)
        settings = invocation.settings
        command = COMMANDS[invocation.command]
        secrets = _secrets(settings)
        if command.secrets is not None:
            secrets |= command.secrets(invocation.arguments)
        configure_logging(settings.log_level, settings.log_format, secrets)
        return command.run(settings, invocation.arguments, _transport(settings))

    return run_program(program)
