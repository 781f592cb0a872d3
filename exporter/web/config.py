"""The whole ``--web.config.file`` validated once into a :class:`WebConfig`."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from exporter.web.schema import WebConfigError, validate_schema
from exporter.web.tls import TLSSettings, tls_settings

# The toolkit lets only these response headers be configured, some with a fixed
# set of values, "to ensure consistency in the Prometheus ecosystem"; names are
# matched exactly as written, as the toolkit does.
ALLOWED_HEADERS: Mapping[str, tuple[str, ...]] = {
    "Strict-Transport-Security": (),
    "X-Content-Type-Options": ("nosniff",),
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-XSS-Protection": (),
    "Content-Security-Policy": (),
}

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_HINT = "generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class WebConfig:
    """A validated web config file. ``repr()`` never shows the password hashes."""

    path: Path
    tls: TLSSettings | None
    users: Mapping[bytes, bytes] = field(repr=False)
    headers: tuple[tuple[str, str], ...]
    #: Warnings for the operator: valid, but probably not what was meant.
    notes: tuple[str, ...] = ()

    @property
    def usernames(self) -> list[str]:
        """The configured basic-auth users, sorted."""
        return sorted(u.decode() for u in self.users)

    @property
    def max_bcrypt_cost(self) -> int:
        """The highest cost among the hashes (what the decoy hash must cost)."""
        return max((int(h[4:6]) for h in self.users.values()), default=4)


def _users(path: Path, users: Mapping[str, str]) -> dict[bytes, bytes]:
    result: dict[bytes, bytes] = {}
    for username, hashed in users.items():
        name = f"basic_auth_users.{username}"
        if ":" in username:
            # RFC 7617: the user-id cannot contain a colon, so this user could never log in.
            raise WebConfigError(path, name, "a username cannot contain ':'")
        match = _BCRYPT_HASH.fullmatch(hashed)
        if match is None:
            raise WebConfigError(path, name, f"not a bcrypt hash; {_BCRYPT_HINT}")
        if not 4 <= int(match.group(1)) <= 31:
            raise WebConfigError(path, name, "bcrypt cost must be between 04 and 31")
        result[username.encode()] = hashed.encode()
    return result


def _headers(path: Path, headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    result: list[tuple[str, str]] = []
    for header, value in headers.items():
        name = f"http_server_config.headers.{header}"
        if header not in ALLOWED_HEADERS:
            raise WebConfigError(path, name,
                                 "this header cannot be configured; allowed: "
                                 + ", ".join(ALLOWED_HEADERS))
        if _CONTROL_CHARS.search(value):
            # A CR or LF would let the value inject other headers into every response.
            raise WebConfigError(path, name, "must not contain control characters (CR, LF, ...)")
        allowed = ALLOWED_HEADERS[header]
        if value and allowed and value not in allowed:
            raise WebConfigError(path, name, "must be one of " + ", ".join(allowed))
        if value:  # the toolkit leaves a header unset when its value is blank
            result.append((header, value))
    return tuple(result)


def read_web_config(source: Path) -> bytes:
    """The web config file's bytes; a missing or unreadable file is a WebConfigError."""
    try:
        return source.read_bytes()
    except FileNotFoundError:
        raise WebConfigError(source, "", "file not found") from None
    except OSError as exc:
        raise WebConfigError(source, "", f"cannot be read: {exc.strerror}") from None


def parse_web_config(path: str | os.PathLike[str], text: bytes | None = None) -> WebConfig:
    """Validate a web config file (read from *path* unless *text* is given)."""
    source = Path(path).absolute()
    if text is None:
        text = read_web_config(source)
    schema = validate_schema(source, text)
    notes: list[str] = []
    tls_schema = schema.tls_server_config
    # An empty tls_server_config means no TLS, as in the toolkit.
    tls = (tls_settings(source, tls_schema, notes)
           if tls_schema is not None and tls_schema.model_fields_set else None)
    users = _users(source, schema.basic_auth_users or {})
    http = schema.http_server_config
    headers = _headers(source, (http.headers if http else None) or {})
    costs = sorted({int(h[4:6]) for h in users.values()})
    if len(costs) > 1:
        # Unknown users are checked against a decoy as costly as the costliest
        # hash, but a user with a cheaper hash answers faster than that.
        notes.append(f"basic_auth_users: bcrypt costs differ ({', '.join(map(str, costs))}); "
                     "response times then tell which usernames exist: "
                     "give every user the same cost")
    if users and tls is None:
        notes.append("basic auth without TLS: passwords cross the network in clear text")
    if not users and tls is None:
        notes.append("the web config enables neither TLS nor basic auth")
    return WebConfig(path=source, tls=tls, users=users, headers=headers, notes=tuple(notes))
