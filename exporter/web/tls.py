"""``tls_server_config``: validated into :class:`TLSSettings`, and the server SSL contexts.

Where Python's TLS stack cannot do what Go's does, the file is rejected with a
one-line error rather than silently served less securely (see docs/security.md).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from exporter.core.logs import mask_value
from exporter.web.schema import TLSServerSchema, WebConfigError

if TYPE_CHECKING:
    from socket import socket

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


class ClientAuth(str, Enum):
    """``client_auth_type``: the toolkit's names for Go's ``tls.ClientAuthType``."""

    NO_CLIENT_CERT = "NoClientCert"
    REQUEST_CLIENT_CERT = "RequestClientCert"
    REQUIRE_ANY_CLIENT_CERT = "RequireAnyClientCert"
    VERIFY_CLIENT_CERT_IF_GIVEN = "VerifyClientCertIfGiven"
    REQUIRE_AND_VERIFY_CLIENT_CERT = "RequireAndVerifyClientCert"


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


def _readable_file(path: Path, base: Path, name: str, value: str) -> Path:
    resolved = (base / value) if not os.path.isabs(value) else Path(value)
    if not resolved.exists():
        raise WebConfigError(path, name, f"file not found ({resolved})")
    if not resolved.is_file():
        raise WebConfigError(path, name, f"not a regular file ({resolved})")
    if not os.access(resolved, os.R_OK):
        raise WebConfigError(path, name, f"not readable ({resolved})")
    return resolved


def tls_settings(path: Path, schema: TLSServerSchema, notes: list[str]) -> TLSSettings:
    """``tls_server_config`` of the file at *path* checked; warnings are added to *notes*."""
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


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> str:
    # Without a callback OpenSSL would prompt on the terminal for the passphrase.
    raise _EncryptedKey


def configure_context(context: ssl.SSLContext, tls: TLSSettings, path: Path) -> None:
    """Load *tls* into *context*; raises WebConfigError naming the field of the file *path*."""
    prefix = "tls_server_config"
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
    if b"-----BEGIN CERTIFICATE-----" not in _read(tls.cert_file, path, "cert_file"):
        raise WebConfigError(path, f"{prefix}.cert_file", "no PEM certificate in the file")
    if b"PRIVATE KEY-----" not in _read(tls.key_file, path, "key_file"):
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


def _read(file: Path, path: Path, name: str) -> bytes:
    try:
        return file.read_bytes()
    except OSError as exc:
        raise WebConfigError(path, f"tls_server_config.{name}",
                             f"cannot be read: {exc.strerror} ({file})") from None


def build_ssl_context(tls: TLSSettings, path: Path) -> ssl.SSLContext:
    """A server SSLContext for *tls*, from the web config file *path*."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    configure_context(context, tls, path)
    return context


class ReloadingSSLContext(ssl.SSLContext):
    """The context handed to the server: each new connection gets the current one.

    Wrapping delegates to a context built from the files as they are now, so a
    rotated certificate, key or CA (or a new ``client_auth_type``) applies to
    the next connection. Swapping whole contexts, rather than only the
    certificate in an SNI callback, also carries over the verify mode and
    versions, which OpenSSL copies into a connection when it is created. This
    object's own settings mirror the configuration at start-up.
    """

    #: Returns the context for the files as they are now (set by :meth:`following`).
    current: Callable[[], ssl.SSLContext]

    @classmethod
    def following(cls, current: Callable[[], ssl.SSLContext], tls: TLSSettings,
                  path: Path) -> ReloadingSSLContext:
        """A context configured like *tls* whose connections use ``current()``."""
        context = cls(ssl.PROTOCOL_TLS_SERVER)
        configure_context(context, tls, path)
        context.current = current
        return context

    def wrap_socket(self, sock: socket, server_side: bool = False,
                    do_handshake_on_connect: bool = True, suppress_ragged_eofs: bool = True,
                    server_hostname: str | bytes | None = None,
                    session: ssl.SSLSession | None = None) -> ssl.SSLSocket:
        return self.current().wrap_socket(
            sock, server_side=server_side, do_handshake_on_connect=do_handshake_on_connect,
            suppress_ragged_eofs=suppress_ragged_eofs, server_hostname=server_hostname,
            session=session)

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        return self.current().wrap_bio(
            incoming, outgoing, server_side=server_side, server_hostname=server_hostname,
            session=session)
