"""Logging: logfmt or JSON lines on stderr, with secrets redacted on the way out.

Call sites pass structured fields as ``extra={"fields": {...}}``. Every
formatted line goes through a redactor that knows the configured secrets and
their HTTP Basic encodings, so a secret cannot leak even from a third-party
logger; httpx and httpcore are also kept at WARNING, because at debug level they
describe requests in detail.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, TextIO

REDACTED = "<redacted>"
_QUIET_LOGGERS = ("httpx", "httpcore", "hpack", "urllib3")


def secret_variants(api_key: str, secret: str) -> set[str]:
    """A secret as it could appear in text: clear, and inside a Basic credential."""
    pair = f"{api_key}:{secret}".encode()
    variants = {secret, base64.b64encode(pair).decode(), base64.urlsafe_b64encode(pair).decode()}
    return {v for v in variants if len(v) >= 4}


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text == "" or any(c in text for c in ' "=\\') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool, secrets: Iterable[str]) -> None:
        super().__init__()
        self._json = json_lines
        self._secrets = sorted(secrets, key=len, reverse=True)

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        if self._json:
            line = json.dumps(fields, default=str, ensure_ascii=False)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        for secret in self._secrets:
            line = line.replace(secret, REDACTED)
        return line


def configure_logging(level: str, fmt: str, secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> None:
    """Send all logs to *stream* (stderr) as one line each, in logfmt or JSON."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(_Formatter(fmt == "json", secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def mask(value: str) -> str:
    """Keep the first 4 characters of an identifier, enough to tell keys apart."""
    return value[:4] + "…" if len(value) > 4 else "…"


def mask_value(value: str) -> str:
    """An invalid value as an error may show it: short ones whole, long ones cut.

    A secret pasted into the wrong setting must not reach the logs, so a value
    longer than a few characters shows only its first three and its length.
    """
    if len(value) <= 6 and value.isprintable():
        return repr(value)
    return f"{value[:3]!r}… ({len(value)} characters)" if value[:3].isprintable() else \
        f"({len(value)} characters)"
