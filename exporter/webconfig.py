"""``--web.config.file``: TLS, client certificates, basic auth and response headers.

The file uses the Prometheus exporter-toolkit format, so users reuse what they
know from node_exporter and ``promtool check web-config`` validates it::

    tls_server_config:
      cert_file: tls.crt            # relative paths are relative to this file
      key_file: tls.key
      client_ca_file: ca.crt
      client_auth_type: RequireAndVerifyClientCert
      min_version: TLS12
    http_server_config:
      headers:
        X-Content-Type-Options: nosniff
    basic_auth_users:
      prometheus: $2y$10$...        # bcrypt hash

Where Python's TLS stack cannot do what Go's does, the file is rejected with a
one-line error rather than silently served less securely (see docs/security.md).

The file and the certificate files it names are re-read when they change, at
most every ``reload_interval`` seconds: new users, headers and rotated
certificates apply without a restart. A change that does not load (bad YAML, a
half-written key) is logged once and the last good configuration stays in force.
"""

from __future__ import annotations

import base64
import collections
import contextlib
import hashlib
import hmac
import logging
import os
import re
import secrets
import ssl
import threading
import time
import typing
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import bcrypt
from cachetools import LRUCache
from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from exporter.config import mask_value
from exporter.yamlfile import Schema, YAMLFileError, load_mapping, unknown_key

if TYPE_CHECKING:  # wsgiref.types only exists at run time from Python 3.11
    from collections.abc import Callable
    from socket import socket
    from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

    from _typeshed import OptExcInfo

log = logging.getLogger("exporter.webconfig")

#: The paths that ``--web.health-without-auth`` opens for kubelet probes.
HEALTH_PATHS: frozenset[str] = frozenset({"/-/healthy", "/-/ready"})

REALM = "scenario-exporter"
DEFAULT_RELOAD_INTERVAL = 2.0

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

# Go cipher suite names (what the toolkit accepts: crypto/tls CipherSuites())
# mapped to OpenSSL names. Like Go, the list only applies up to TLS 1.2: TLS 1.3
# suites are accepted and ignored, since neither Go nor OpenSSL's cipher list
# configures them.
_TLS12_CIPHERS: Mapping[str, str] = {
    "TLS_RSA_WITH_AES_128_CBC_SHA": "AES128-SHA",
    "TLS_RSA_WITH_AES_256_CBC_SHA": "AES256-SHA",
    "TLS_RSA_WITH_AES_128_GCM_SHA256": "AES128-GCM-SHA256",
    "TLS_RSA_WITH_AES_256_GCM_SHA384": "AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
}
_TLS13_CIPHERS = frozenset({
    "TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
})

_TLS_VERSIONS: Mapping[str, ssl.TLSVersion] = {
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

# Keys of newer exporter-toolkit releases that this exporter cannot honour.
# Ignoring them would serve less securely than the user asked, so they fail.
_UNSUPPORTED_KEYS: Mapping[tuple[str, ...], str] = {
    ("tls_server_config", "client_allowed_sans"):
        "not supported by scenario-exporter; use a dedicated client CA instead",
    ("tls_server_config", "cert"): "inline certificates are not supported; use cert_file",
    ("tls_server_config", "key"): "inline keys are not supported; use key_file",
    ("tls_server_config", "client_ca"): "inline CAs are not supported; use client_ca_file",
    ("rate_limit",): "not supported by scenario-exporter",
}

_BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
_BCRYPT_HINT = "generate one with: htpasswd -nBC 10 \"\" | tr -d ':\\n'"
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# bcrypt only ever uses the first 72 bytes of a password; bcrypt>=5 raises on
# longer ones instead of truncating, but hashes made by htpasswd or Go's bcrypt
# were made from the truncated password, so truncate the same way.
_BCRYPT_MAX_PASSWORD = 72


class WebConfigError(ValueError):
    """An invalid web config; ``str()`` is one line naming the file and the field."""

    def __init__(self, path: str | os.PathLike[str], field: str, problem: str) -> None:
        self.path = str(path)
        self.field = field
        self.problem = problem
        where = f"{field}: " if field else ""
        super().__init__(f"web config {self.path}: {where}{problem}")


class ClientAuth(str, Enum):
    """``client_auth_type``: the toolkit's names for Go's ``tls.ClientAuthType``."""

    NO_CLIENT_CERT = "NoClientCert"
    REQUEST_CLIENT_CERT = "RequestClientCert"
    REQUIRE_ANY_CLIENT_CERT = "RequireAnyClientCert"
    VERIFY_CLIENT_CERT_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY_CLIENT_CERT = "RequireAndVerifyClientCert"


# --- the file's schema (types, enumerations, unknown keys) ---------------------------


def _scalar_text(value: Any) -> Any:
    """Header values: YAML reads ``X-XSS-Protection: 0`` as an int; Go reads it as text."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _TLSServerSchema(_Schema):
    cert_file: str = ""
    key_file: str = ""
    client_ca_file: str = ""
    client_auth_type: Literal[
        "NoClientCert", "RequestClientCert", "RequireAnyClientCert",
        "VerifyClientCertIfGiven", "RequireAndVerifyClientCert",
    ] = "NoClientCert"
    min_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS12"
    max_version: Literal["TLS10", "TLS11", "TLS12", "TLS13"] = "TLS13"
    cipher_suites: list[str] | None = None
    prefer_server_cipher_suites: bool = True
    curve_preferences: list[Literal["CurveP256", "CurveP384", "CurveP521", "X25519"]] | None = None


class _HTTPServerSchema(_Schema):
    http2: bool = True
    headers: dict[str, Annotated[str, BeforeValidator(_scalar_text)]] | None = None


class _WebConfigSchema(_Schema):
    tls_server_config: _TLSServerSchema | None = None
    http_server_config: _HTTPServerSchema | None = None
    basic_auth_users: dict[str, str] | None = None


# --- the validated configuration -------------------------------------------------------


@dataclass(frozen=True)
class TLSSettings:
    """``tls_server_config`` with paths resolved and names mapped to OpenSSL's."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None
    client_auth: ClientAuth
    min_version: ssl.TLSVersion
    max_version: ssl.TLSVersion
    openssl_ciphers: tuple[str, ...]
    prefer_server_cipher_suites: bool

    @property
    def files(self) -> tuple[Path, ...]:
        """The files whose content makes up the TLS identity (watched for rotation)."""
        extra = (self.client_ca_file,) if self.client_ca_file else ()
        return (self.cert_file, self.key_file, *extra)


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


def _parse_yaml(path: Path, text: bytes) -> Mapping[str, Any]:
    try:
        return load_mapping(text)
    except YAMLFileError as exc:
        raise WebConfigError(path, "", str(exc)) from None


def _model_schema(model: type[BaseModel]) -> Schema:
    """The keys of *model* and its nested models, for :func:`unknown_key`."""
    schema: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        nested = [arg for arg in (info.annotation, *typing.get_args(info.annotation))
                  if isinstance(arg, type) and issubclass(arg, BaseModel)]
        schema[name] = _model_schema(nested[0]) if nested else None
    return schema


def _check_unsupported(path: Path, data: Mapping[str, Any]) -> None:
    for keys, problem in _UNSUPPORTED_KEYS.items():
        node: Any = data
        for key in keys[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            raise WebConfigError(path, ".".join(keys), problem)


def _schema_error(path: Path, exc: ValidationError) -> WebConfigError:
    """The first pydantic error as one line; never the value (it may be a hash)."""
    error = exc.errors()[0]
    parts: list[str] = []
    for part in error["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        elif part != "[key]":
            parts.append(str(part))
    kind = error["type"]
    if kind == "extra_forbidden":
        problem = "unknown key"
    elif kind == "literal_error":
        problem = (f"must be one of {error['ctx']['expected']}, "
                   f"got {mask_value(str(error['input']))}")
    elif kind == "string_type":
        problem = "must be a string" + (" (quote it)" if error["loc"][-1] == "[key]" else "")
    elif kind == "bool_type":
        problem = "must be true or false"
    elif kind in {"dict_type", "model_type"}:
        problem = "must be a mapping"
    elif kind == "list_type":
        problem = "must be a list"
    else:
        problem = error["msg"]
    return WebConfigError(path, ".".join(parts), problem)


def _readable_file(path: Path, base: Path, name: str, value: str) -> Path:
    resolved = (base / value) if not os.path.isabs(value) else Path(value)
    if not resolved.exists():
        raise WebConfigError(path, name, f"file not found ({resolved})")
    if not resolved.is_file():
        raise WebConfigError(path, name, f"not a regular file ({resolved})")
    if not os.access(resolved, os.R_OK):
        raise WebConfigError(path, name, f"not readable ({resolved})")
    return resolved


def _tls_settings(path: Path, schema: _TLSServerSchema, notes: list[str]) -> TLSSettings:
    prefix = "tls_server_config"
    if not schema.cert_file:
        raise WebConfigError(path, f"{prefix}.cert_file", "required when tls_server_config is set")
    if not schema.key_file:
        raise WebConfigError(path, f"{prefix}.key_file", "required when tls_server_config is set")
    base = path.parent
    cert_file = _readable_file(path, base, f"{prefix}.cert_file", schema.cert_file)
    key_file = _readable_file(path, base, f"{prefix}.key_file", schema.key_file)
    client_ca_file = (_readable_file(path, base, f"{prefix}.client_ca_file", schema.client_ca_file)
                      if schema.client_ca_file else None)

    client_auth = ClientAuth(schema.client_auth_type)
    auth_field = f"{prefix}.client_auth_type"
    if client_auth is ClientAuth.REQUIRE_ANY_CLIENT_CERT:
        # Go accepts any certificate, even self-signed, without verifying it.
        # Python's ssl module cannot request a certificate without verifying it.
        raise WebConfigError(path, auth_field,
                             "RequireAnyClientCert (an unverified certificate) is not supported; "
                             "use RequireAndVerifyClientCert with client_ca_file")
    if client_ca_file is not None and client_auth is ClientAuth.NO_CLIENT_CERT:
        raise WebConfigError(path, f"{prefix}.client_ca_file",
                             "set, but client_auth_type is NoClientCert; "
                             "set client_auth_type: RequireAndVerifyClientCert")
    if client_ca_file is None and client_auth in {ClientAuth.VERIFY_CLIENT_CERT_IF_GIVEN,
                                                  ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT}:
        # Go would fall back to the system roots: any certificate a public CA
        # ever issued would then get in, which is never what is meant.
        raise WebConfigError(path, f"{prefix}.client_ca_file",
                             f"required when client_auth_type is {client_auth.value}")
    if client_auth is ClientAuth.REQUEST_CLIENT_CERT:
        notes.append("client_auth_type RequestClientCert does not authenticate clients; "
                     "use RequireAndVerifyClientCert to require client certificates")

    versions: dict[str, ssl.TLSVersion] = {}
    for name in ("min_version", "max_version"):
        value = getattr(schema, name)
        if value not in _TLS_VERSIONS:
            raise WebConfigError(path, f"{prefix}.{name}",
                                 f"{value} is not supported; use TLS12 or TLS13")
        versions[name] = _TLS_VERSIONS[value]
    if versions["max_version"] < versions["min_version"]:
        raise WebConfigError(path, f"{prefix}.max_version",
                             f"{schema.max_version} is lower than min_version {schema.min_version}")

    ciphers: list[str] = []
    for index, name in enumerate(schema.cipher_suites or ()):
        if name in _TLS12_CIPHERS:
            ciphers.append(_TLS12_CIPHERS[name])
        elif name not in _TLS13_CIPHERS:
            raise WebConfigError(path, f"{prefix}.cipher_suites[{index}]",
                                 f"unknown cipher suite {mask_value(name)} (use Go's names, "
                                 "e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)")
    if schema.curve_preferences:
        notes.append("tls_server_config.curve_preferences is accepted but not applied: "
                     "OpenSSL's default groups are used")

    return TLSSettings(
        cert_file=cert_file, key_file=key_file, client_ca_file=client_ca_file,
        client_auth=client_auth, min_version=versions["min_version"],
        max_version=versions["max_version"], openssl_ciphers=tuple(ciphers),
        prefer_server_cipher_suites=schema.prefer_server_cipher_suites,
    )


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


def _read_config(source: Path) -> bytes:
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
        text = _read_config(source)
    data = _parse_yaml(source, text)
    _check_unsupported(source, data)
    unknown = unknown_key(data, _model_schema(_WebConfigSchema))
    if unknown:
        raise WebConfigError(source, *unknown)
    try:
        schema = _WebConfigSchema.model_validate(data)
    except ValidationError as exc:
        raise _schema_error(source, exc) from None
    notes: list[str] = []
    tls_schema = schema.tls_server_config
    # An empty tls_server_config means no TLS, as in the toolkit.
    tls = (_tls_settings(source, tls_schema, notes)
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


# --- TLS -----------------------------------------------------------------------------


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for the passphrase.
    raise _EncryptedKey


def _configure_context(context: ssl.SSLContext, config: WebConfig) -> None:
    """Load *config*'s TLS settings into *context*; raises WebConfigError naming the field."""
    tls = config.tls
    assert tls is not None
    path, prefix = config.path, "tls_server_config"
    context.minimum_version = tls.min_version
    context.maximum_version = tls.max_version
    if tls.openssl_ciphers:
        try:
            context.set_ciphers(":".join(tls.openssl_ciphers))
        except ssl.SSLError:
            raise WebConfigError(path, f"{prefix}.cipher_suites",
                                 "none of these cipher suites is available in this "
                                 f"OpenSSL ({ssl.OPENSSL_VERSION})") from None
    if not tls.prefer_server_cipher_suites:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    if b"-----BEGIN CERTIFICATE-----" not in _read(tls.cert_file, config, "cert_file"):
        raise WebConfigError(path, f"{prefix}.cert_file", "no PEM certificate in the file")
    if b"PRIVATE KEY-----" not in _read(tls.key_file, config, "key_file"):
        raise WebConfigError(path, f"{prefix}.key_file", "no PEM private key in the file")
    try:
        context.load_cert_chain(tls.cert_file, tls.key_file, password=_refuse_password)
    except _EncryptedKey:
        raise WebConfigError(path, f"{prefix}.key_file",
                             "the key is encrypted; give an unencrypted key") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise WebConfigError(path, f"{prefix}.key_file",
                                 "does not match the certificate in cert_file") from None
        raise WebConfigError(path, f"{prefix}.cert_file",
                             f"cannot load the certificate and key: {exc.reason or exc}") from None
    except OSError as exc:  # the file vanished since it was checked
        raise WebConfigError(path, f"{prefix}.cert_file", f"cannot be read: {exc}") from None
    if tls.client_ca_file is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca_file)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise WebConfigError(path, f"{prefix}.client_ca_file",
                                 f"no usable PEM CA certificate: {reason}") from None
    context.verify_mode = {
        ClientAuth.NO_CLIENT_CERT: ssl.CERT_NONE,
        # Go asks for a certificate and ignores it; not asking is the same to us.
        ClientAuth.REQUEST_CLIENT_CERT: ssl.CERT_NONE,
        ClientAuth.VERIFY_CLIENT_CERT_IF_GIVEN: ssl.CERT_OPTIONAL,
        ClientAuth.REQUIRE_AND_VERIFY_CLIENT_CERT: ssl.CERT_REQUIRED,
    }[tls.client_auth]


def _read(file: Path, config: WebConfig, name: str) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise WebConfigError(config.path, f"tls_server_config.{name}",
                             f"cannot be read: {exc.strerror} ({file})") from None


def build_ssl_context(config: WebConfig) -> ssl.SSLContext:
    """A server SSLContext for *config*'s ``tls_server_config`` (which must be set)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure_context(context, config)
    return context


class _ReloadingSSLContext(ssl.SSLContext):
    """The context handed to the server: each new connection gets the current one.

    Wrapping delegates to a context built from the files as they are now, so a
    rotated certificate, key or CA (or a new ``client_auth_type``) applies to
    the next connection. Swapping whole contexts, rather than only the
    certificate in an SNI callback, also carries over the verify mode and
    versions, which OpenSSL copies into a connection when it is created. This
    object's own settings mirror the configuration at start-up.
    """

    _security: WebSecurity

    def wrap_socket(self, sock: socket, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return self._security._current_ssl_context().wrap_socket(
            sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
            session=session)

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return self._security._current_ssl_context().wrap_bio(
            incoming, outgoing, server_side=server_side, server_hostname=server_hostname,
            session=session)


# --- the whole: reloading state, basic auth, headers --------------------------------------


@dataclass(frozen=True)
class _State:
    config: WebConfig
    ssl_context: ssl.SSLContext | None
    fingerprint: bytes


def _fingerprint(config_text: bytes, files: Iterable[Path]) -> bytes:
    """A digest of the config file and the certificate files, to notice any change.

    Contents rather than mtimes: Kubernetes swaps a symlink to rotate a secret,
    and a rewrite within the filesystem's timestamp granularity would go unseen.
    """
    digest = hashlib.sha256(config_text)
    for file in files:
        digest.update(b"\0" + os.fsencode(file) + b"\0")
        try:
            digest.update(file.read_bytes())
        except OSError as exc:
            digest.update(f"unreadable: {exc.errno}".encode())
    return digest.digest()


class WebSecurity:
    """What ``--web.config.file`` asks for: TLS, client certificates, basic auth, headers.

    Build it with :meth:`from_file`; pass :meth:`ssl_context` to
    ``create_server`` and the application through :meth:`wrap`.
    """

    def __init__(self, state: _State, open_paths: frozenset[str], reload_interval: float) -> None:
        self._state = state
        self._open_paths = open_paths
        self._reload_interval = reload_interval
        self._next_check = time.monotonic() + reload_interval
        self._reload_lock = threading.Lock()
        self._failed_fingerprint: bytes | None = None
        # bcrypt is deliberately slow: a few checks at a time keep a flood of bad
        # passwords to a core or two, and cached successes never wait for a turn.
        self._gate = PasswordGate()
        self._cache_lock = threading.Lock()
        self._verified: LRUCache[bytes, bool] = LRUCache(maxsize=256)
        # Cache keys are keyed hashes: a memory dump then holds neither a password
        # nor an unsalted digest that would be faster to brute-force than bcrypt.
        self._cache_key = secrets.token_bytes(32)
        self._decoys: dict[int, bytes] = {}
        self._decoy_lock = threading.Lock()
        self._decoy_for(state.config)
        self._ssl_facade: _ReloadingSSLContext | None = None
        if state.config.tls is not None:
            facade = _ReloadingSSLContext(ssl.PROTOCOL_TLS_SERVER)
            _configure_context(facade, state.config)
            facade._security = self
            self._ssl_facade = facade

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, open_paths: frozenset[str] = frozenset(),
                  reload_interval: float = DEFAULT_RELOAD_INTERVAL) -> WebSecurity:
        """Load and validate *path*; raises :class:`WebConfigError`.

        *open_paths* are answered without basic auth (``HEALTH_PATHS`` for
        ``--web.health-without-auth``); TLS still applies to them. Changes to
        the files are looked for at most every *reload_interval* seconds.
        """
        for open_path in open_paths:
            if not open_path.startswith("/"):
                raise ValueError(f"open path {open_path!r} must start with '/'")
        state = cls._load(Path(path).absolute())
        _log_notes(state.config)
        return cls(state, frozenset(open_paths), reload_interval)

    @staticmethod
    def _load(path: Path) -> _State:
        text = _read_config(path)
        config = parse_web_config(path, text)
        # Fingerprint before building: if a file changes in between, the next
        # check sees a difference and loads again, so the state converges.
        fingerprint = _fingerprint(text, config.tls.files if config.tls else ())
        context = build_ssl_context(config) if config.tls else None
        return _State(config=config, ssl_context=context, fingerprint=fingerprint)

    @property
    def config(self) -> WebConfig:
        """The configuration in force now."""
        self._refresh()
        return self._state.config

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server context, or None without ``tls_server_config``.

        Each connection is wrapped with a context built from the current files.
        Turning TLS on or off needs a restart: the listener is plain or TLS.
        """
        return self._ssl_facade

    def wrap(self, app: WSGIApplication) -> WSGIApplication:
        """*app* behind basic auth (when users are configured), with the configured headers."""
        return _Guard(self, app)

    # -- reloading --

    def _current_ssl_context(self) -> ssl.SSLContext:
        self._refresh()
        context = self._state.ssl_context
        assert context is not None  # TLS cannot be switched off by a reload
        return context

    def _refresh(self) -> None:
        """Load the files again if they changed; at most every reload_interval seconds."""
        now = time.monotonic()
        if now < self._next_check or not self._reload_lock.acquire(blocking=False):
            return
        try:
            self._next_check = now + self._reload_interval
            self._reload_logged()
        finally:
            self._reload_lock.release()

    def reload(self) -> None:
        """Re-read the files now, whatever the reload interval (SIGHUP)."""
        with self._reload_lock:
            self._next_check = time.monotonic() + self._reload_interval
            self._reload_logged()

    def _reload_logged(self) -> None:
        try:
            self._reload()
        except Exception as exc:  # a surprise in reloading must not fail the request that ran it
            log.error("web config reload failed; the previous one stays in force",
                      extra={"fields": {"error": type(exc).__name__}})

    def _reload(self) -> None:
        state = self._state
        path = state.config.path
        try:
            text = path.read_bytes()
        except OSError as exc:
            self._reload_failed(f"unreadable: {exc.errno}".encode(), WebConfigError(
                path, "", f"cannot be read: {exc.strerror}"))
            return
        if _fingerprint(text, state.config.tls.files if state.config.tls else ()) \
                == state.fingerprint:
            return
        try:
            config = parse_web_config(path, text)
        except WebConfigError as exc:
            self._reload_failed(hashlib.sha256(text).digest(), exc)
            return
        # The new config may name other files: fingerprint those.
        fingerprint = _fingerprint(text, config.tls.files if config.tls else ())
        if fingerprint in (state.fingerprint, self._failed_fingerprint):
            return
        if (config.tls is None) != (state.config.tls is None):
            self._reload_failed(fingerprint, WebConfigError(
                path, "tls_server_config", "TLS cannot be switched on or off without a restart"))
            return
        try:
            context = build_ssl_context(config) if config.tls else None
        except WebConfigError as exc:  # e.g. a key written before its certificate
            self._reload_failed(fingerprint, exc)
            return
        self._decoy_for(config)
        with self._cache_lock:
            self._verified.clear()
        self._state = _State(config=config, ssl_context=context, fingerprint=fingerprint)
        self._failed_fingerprint = None
        log.info("web config reloaded", extra={"fields": {
            "file": str(path), "tls": config.tls is not None, "users": len(config.users)}})
        _log_notes(config)

    def _reload_failed(self, fingerprint: bytes, error: WebConfigError) -> None:
        # Logged once per broken version of the files, not at every check.
        if fingerprint != self._failed_fingerprint:
            self._failed_fingerprint = fingerprint
            log.error("web config change not applied; the previous one stays in force",
                      extra={"fields": {"error": str(error)}})

    # -- basic auth --

    def _decoy_for(self, config: WebConfig) -> bytes:
        """A hash for unknown users, as costly as the costliest real one (no timing oracle)."""
        cost = config.max_bcrypt_cost
        with self._decoy_lock:
            if cost not in self._decoys:
                self._decoys[cost] = bcrypt.hashpw(secrets.token_bytes(16),
                                                   bcrypt.gensalt(rounds=cost))
            return self._decoys[cost]

    def _authenticate(self, config: WebConfig, authorization: str | None,
                      client: str) -> bool | None:
        """True or False, or None when *client* already has a check running (answer 429)."""
        credentials = _basic_credentials(authorization)
        if credentials is None:
            return False
        username, password = credentials
        stored = config.users.get(username)
        hashed = stored if stored is not None else self._decoy_for(config)
        key = hmac.new(self._cache_key, b"\0".join(
            (len(username).to_bytes(4, "big"), username, hashed, password)), "sha256").digest()
        if stored is not None:
            with self._cache_lock:
                if self._verified.get(key):
                    return True
        with self._gate.turn(client) as admitted:
            if not admitted:
                return None
            try:
                matches = bcrypt.checkpw(password[:_BCRYPT_MAX_PASSWORD], hashed)
            except ValueError:
                matches = False
        if matches and stored is not None:
            with self._cache_lock:
                self._verified[key] = True
            return True
        return False


class PasswordGate:
    """Turns at the bcrypt checks: *slots* at a time, first come first served per client.

    bcrypt is slow on purpose, so checks are a resource a flood can exhaust.
    Each client address holds at most one place (running or queued); a second
    request from an address with a place gets no turn (the caller answers 429),
    so a flood from one address costs one place, and a login from elsewhere
    waits behind at most one check per other address. Successful checks are
    cached by the caller and never come here again.
    """

    def __init__(self, slots: int = 2) -> None:
        self._slots = slots
        self._running = 0
        self._queue: collections.deque[str] = collections.deque()
        self._holders: set[str] = set()
        self._condition = threading.Condition()

    @contextlib.contextmanager
    def turn(self, client: str) -> Iterator[bool]:
        """Wait for a check slot for *client*; yields False at once if it already has one."""
        with self._condition:
            if client in self._holders:
                admitted = False
            else:
                admitted = True
                self._holders.add(client)
                self._queue.append(client)
                while self._queue[0] != client or self._running >= self._slots:
                    self._condition.wait()
                self._queue.popleft()
                self._running += 1
                self._condition.notify_all()
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            with self._condition:
                self._running -= 1
                self._holders.discard(client)
                self._condition.notify_all()


def _log_notes(config: WebConfig) -> None:
    for note in config.notes:
        log.warning(note, extra={"fields": {"file": str(config.path)}})


def _basic_credentials(authorization: str | None) -> tuple[bytes, bytes] | None:
    """Username and password of an ``Authorization: Basic`` header, as bytes."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        # WSGI passes header values as latin-1 decoded text (PEP 3333).
        decoded = base64.b64decode(token.strip().encode("latin-1"), validate=True)
    except (ValueError, UnicodeEncodeError):
        return None
    username, sep, password = decoded.partition(b":")
    return (username, password) if sep else None


class _Guard:
    """The WSGI middleware returned by :meth:`WebSecurity.wrap`."""

    def __init__(self, security: WebSecurity, app: WSGIApplication) -> None:
        self._security = security
        self._app = app

    def __call__(self, environ: WSGIEnvironment,
                 start_response: StartResponse) -> Iterable[bytes]:
        security = self._security
        config = security.config
        extra = config.headers

        def start_with_headers(status: str, headers: list[tuple[str, str]],
                               exc_info: OptExcInfo | None = None) -> Callable[[bytes], object]:
            # The operator's headers win over the application's of the same name.
            names = {name.lower() for name, _ in extra}
            merged = [(n, v) for n, v in headers if n.lower() not in names] + list(extra)
            return start_response(status, merged, exc_info)

        path = environ.get("PATH_INFO", "")
        if not config.users or path in security._open_paths:
            return self._app(environ, start_with_headers)
        client = environ.get("REMOTE_ADDR", "")
        verdict = security._authenticate(config, environ.get("HTTP_AUTHORIZATION"), client)
        if verdict:
            return self._app(environ, start_with_headers)
        log.debug("basic auth failed", extra={"fields": {
            "client": client, "path": path, "busy": verdict is None}})
        if verdict is None:
            return _too_many(start_with_headers)
        return _unauthorized(start_with_headers)


def _too_many(start_response: StartResponse) -> Iterator[bytes]:
    body = b"429 Too Many Requests: a password check from this address is still running\n"
    start_response("429 Too Many Requests", [
        ("Retry-After", "1"),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    yield body


def _unauthorized(start_response: StartResponse) -> Iterator[bytes]:
    body = b"401 Unauthorized\n"
    start_response("401 Unauthorized", [
        ("WWW-Authenticate", f'Basic realm="{REALM}", charset="UTF-8"'),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ])
    yield body
