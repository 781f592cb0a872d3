"""TLS and mutual TLS of ``--web.config.file`` on an application served on loopback:
real handshakes with the standard library's clients, versions and cipher suites,
client certificates, and certificates and client CAs rotated on disk
(``exporter.web.tls``'s contexts as ``exporter.web.security`` reloads them).

The settings refused at load are in tests/unit/test_web_tls.py.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from exporter.web.config import parse_web_config
from exporter.web.security import WebSecurity
from exporter.web.server import ServerLimits
from testkit.pki import PKI, Identity, make_pki
from testkit.waiting import wait_for
from testkit.web import Reply
from testkit.webconfig import (
    DEADLINE,
    FAST,
    MTLS,
    TLS,
    bcrypt_hash,
    fetch,
    serving_guarded,
    users,
    write_config,
)


@pytest.fixture(scope="module")
def pki() -> PKI:
    return make_pki()


@pytest.fixture()
def tls_dir(tmp_path: Path, pki: PKI) -> Path:
    """A directory with tls.crt, tls.key and ca.crt, as a mounted Kubernetes secret."""
    return pki.write_secret(tmp_path)


def _client_context(pki: PKI, identity: Identity | None = None, tmp: Path | None = None,
                    **versions: ssl.TLSVersion) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=pki.ca.cert.decode())
    for name, version in versions.items():
        setattr(context, name, version)
    if identity is not None:
        assert tmp is not None
        identity.write(tmp, "client.crt", "client.key")
        context.load_cert_chain(tmp / "client.crt", tmp / "client.key")
    return context


def _refused(action: Callable[[], Reply]) -> bool:
    """True when the server refused the connection during or right after the handshake."""
    try:
        action()
    except (ssl.SSLError, ConnectionError, http.client.BadStatusLine):
        return True
    return False


# --- TLS -------------------------------------------------------------------------------


def test_tls_only_serves_the_configured_certificate(tls_dir: Path, pki: PKI,
                                                    capfd: pytest.CaptureFixture[str]) -> None:
    security = WebSecurity.from_file(str(write_config(tls_dir, TLS)))
    with serving_guarded(security) as server:
        reply = fetch(server, tls=_client_context(pki))
        assert reply.status == 200
        assert reply.body == b"ok /metrics\n"
        assert reply.peer_cert == pki.server.der

        # Plain HTTP on the TLS port: the connection is closed, nothing is
        # printed, and the server keeps serving.
        assert _refused(lambda: fetch(server))
        assert fetch(server, tls=_client_context(pki)).status == 200
    assert capfd.readouterr().err == ""


def test_a_client_that_never_handshakes_is_dropped(tls_dir: Path, pki: PKI) -> None:
    security = WebSecurity.from_file(str(write_config(tls_dir, TLS)))
    with serving_guarded(security, ServerLimits(tls_handshake_timeout=0.2)) as server:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=DEADLINE) as raw:
            # recv returns b"" once the server gives up and closes.
            assert raw.recv(1024) == b""
        assert fetch(server, tls=_client_context(pki)).status == 200


def test_tls_and_basic_auth(tls_dir: Path, pki: PKI) -> None:
    config = TLS + users(prometheus=bcrypt_hash("s3cret"))
    security = WebSecurity.from_file(str(write_config(tls_dir, config)))
    with serving_guarded(security) as server:
        tls = _client_context(pki)
        denied = fetch(server, tls=tls)
        assert denied.status == 401
        assert denied.headers["www-authenticate"].startswith('Basic realm="scenario-exporter"')
        assert fetch(server, tls=tls, auth=("prometheus", "s3cret")).status == 200


def test_min_version_and_cipher_suites_are_enforced(tls_dir: Path, pki: PKI) -> None:
    config = TLS + ("  max_version: TLS12\n"
                    "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n")
    with serving_guarded(WebSecurity.from_file(str(write_config(tls_dir, config)))) as server:
        tls = _client_context(pki)
        conn = http.client.HTTPSConnection("127.0.0.1", server.server_port, context=tls,
                                           timeout=DEADLINE)
        try:
            conn.connect()
            assert isinstance(conn.sock, ssl.SSLSocket)
            assert conn.sock.version() == "TLSv1.2"
            cipher = conn.sock.cipher()
            assert cipher is not None
            assert cipher[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
        finally:
            conn.close()

    config13 = TLS + "  min_version: TLS13\n"
    with serving_guarded(WebSecurity.from_file(str(write_config(tls_dir, config13)))) as server:
        old_client = _client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        assert _refused(lambda: fetch(server, tls=old_client))
        assert fetch(server, tls=_client_context(pki)).status == 200


# --- mutual TLS ------------------------------------------------------------------------


def test_mtls_required(tls_dir: Path, pki: PKI, tmp_path_factory: pytest.TempPathFactory,
                       capfd: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path_factory.mktemp("client")
    security = WebSecurity.from_file(str(write_config(tls_dir, MTLS)))
    with serving_guarded(security) as server:
        with_cert = _client_context(pki, pki.client, keys)
        assert fetch(server, tls=with_cert).status == 200
        assert _refused(lambda: fetch(server, tls=_client_context(pki)))
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: fetch(server, tls=stranger))
        assert fetch(server, tls=with_cert).status == 200
    assert capfd.readouterr().err == ""


def test_verify_client_cert_if_given(tls_dir: Path, pki: PKI,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    keys = tmp_path_factory.mktemp("client")
    config = MTLS.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven")
    with serving_guarded(WebSecurity.from_file(str(write_config(tls_dir, config)))) as server:
        assert fetch(server, tls=_client_context(pki)).status == 200
        assert fetch(server, tls=_client_context(pki, pki.client, keys)).status == 200
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: fetch(server, tls=stranger))


def test_request_client_cert_authenticates_nobody_and_says_so(tls_dir: Path, pki: PKI) -> None:
    # Go asks for a certificate and ignores it: the same as not asking.
    text = TLS + "  client_auth_type: RequestClientCert\n"
    config = parse_web_config(write_config(tls_dir, text))
    assert any("does not authenticate clients" in note for note in config.notes)
    with serving_guarded(WebSecurity.from_file(str(config.path))) as server:
        assert fetch(server, tls=_client_context(pki)).status == 200


# --- reloading -------------------------------------------------------------------------


def test_rotated_certificate_is_served_after_rewrite(tls_dir: Path, pki: PKI) -> None:
    security = WebSecurity.from_file(str(write_config(tls_dir, TLS)), reload_interval=FAST)
    with serving_guarded(security) as server:
        tls = _client_context(pki)
        assert fetch(server, tls=tls).peer_cert == pki.server.der
        pki.server_rotated.write(tls_dir, "tls.crt", "tls.key")
        wait_for(lambda: fetch(server, tls=tls).peer_cert == pki.server_rotated.der,
                 DEADLINE, "the rotated certificate")
        assert fetch(server, tls=tls).status == 200


def test_rotated_client_ca_applies_after_rewrite(tls_dir: Path, pki: PKI,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    keys = tmp_path_factory.mktemp("client")
    security = WebSecurity.from_file(str(write_config(tls_dir, MTLS)), reload_interval=FAST)
    with serving_guarded(security) as server:
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: fetch(server, tls=stranger))
        (tls_dir / "ca.crt").write_bytes(pki.other_ca.cert)
        wait_for(lambda: not _refused(lambda: fetch(server, tls=stranger)), DEADLINE,
                 "the new client CA")
        client_keys = tmp_path_factory.mktemp("client")
        assert _refused(lambda: fetch(server, tls=_client_context(pki, pki.client, client_keys)))


def test_tls_cannot_be_switched_off_by_a_reload(tls_dir: Path, pki: PKI,
                                                caplog: pytest.LogCaptureFixture) -> None:
    security = WebSecurity.from_file(str(write_config(tls_dir, TLS)), reload_interval=FAST)
    with serving_guarded(security) as server:
        write_config(tls_dir, users(alice=bcrypt_hash("pw")))

        def refused() -> bool:
            # Each connection looks for changes; the TLS one keeps being served.
            assert fetch(server, tls=_client_context(pki)).status == 200
            return any("switched on or off" in str(r.__dict__.get("fields"))
                       for r in caplog.records)

        wait_for(refused, DEADLINE, "the refusal")
        assert security.config.tls is not None
        assert not security.config.users
