"""``--web.config.file``: TLS, mTLS, basic auth, headers and reloads, on real loopback servers.

Certificates are made here with ``cryptography``; clients are the standard
library's, so every handshake is a real one.
"""

from __future__ import annotations

import base64
import http.client
import logging
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from cryptography.hazmat.primitives import serialization

from exporter.web.auth import PasswordGate
from exporter.web.config import parse_web_config
from exporter.web.schema import WebConfigError
from exporter.web.security import HEALTH_PATHS, WebSecurity
from exporter.web.server import HTTPServer, ServerLimits
from testkit.pki import PKI, Identity, make_pki
from testkit.repo import REPO_ROOT
from testkit.tools import require_tool
from testkit.waiting import wait_for
from testkit.web import Reply, basic_authorization, call, http_get, serving

EXAMPLES = sorted((REPO_ROOT / "examples" / "web-config").glob("*.yml"))
FAST = 0.05  # reload interval for the tests that rewrite files
DEADLINE = 10.0


# --- certificates --------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki() -> PKI:
    return make_pki()


@pytest.fixture()
def tls_dir(tmp_path: Path, pki: PKI) -> Path:
    """A directory with tls.crt, tls.key and ca.crt, as a mounted Kubernetes secret."""
    pki.server.write(tmp_path, "tls.crt", "tls.key")
    (tmp_path / "ca.crt").write_bytes(pki.ca.cert)
    return tmp_path


def _hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=cost)).decode()


def _write(directory: Path, text: str, name: str = "web.yml") -> Path:
    path = directory / name
    tmp = directory / f".{name}.tmp"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


TLS = "tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n"
MTLS = TLS + "  client_ca_file: ca.crt\n  client_auth_type: RequireAndVerifyClientCert\n"


def _users(**users: str) -> str:
    return "basic_auth_users:\n" + "".join(f"  {u}: '{h}'\n" for u, h in users.items())


# --- server and client ---------------------------------------------------------------


def _app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    body = f"ok {environ['PATH_INFO']}\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Frame-Options", "sameorigin"),
                              ("Content-Length", str(len(body)))])
    return [body]


def _serving(security: WebSecurity,
             limits: ServerLimits | None = None) -> AbstractContextManager[HTTPServer]:
    return serving(security.wrap(_app), security.ssl_context(), limits)


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


def _fetch(server: HTTPServer, path: str = "/metrics", *,
           tls: ssl.SSLContext | None = None, auth: tuple[str, str] | None = None,
           authorization: str | None = None) -> Reply:
    if auth is not None:
        authorization = basic_authorization(*auth)
    headers = {} if authorization is None else {"Authorization": authorization}
    return http_get(server.server_port, path, headers, tls=tls, timeout=DEADLINE)


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
    security = WebSecurity.from_file(str(_write(tls_dir, TLS)))
    with _serving(security) as server:
        reply = _fetch(server, tls=_client_context(pki))
        assert reply.status == 200
        assert reply.body == b"ok /metrics\n"
        assert reply.peer_cert == pki.server.der

        # Plain HTTP on the TLS port: the connection is closed, nothing is
        # printed, and the server keeps serving.
        assert _refused(lambda: _fetch(server))
        assert _fetch(server, tls=_client_context(pki)).status == 200
    assert capfd.readouterr().err == ""


def test_a_client_that_never_handshakes_is_dropped(tls_dir: Path, pki: PKI) -> None:
    security = WebSecurity.from_file(str(_write(tls_dir, TLS)))
    with _serving(security, ServerLimits(tls_handshake_timeout=0.2)) as server:
        with socket.create_connection(("127.0.0.1", server.server_port), timeout=DEADLINE) as raw:
            # recv returns b"" once the server gives up and closes.
            assert raw.recv(1024) == b""
        assert _fetch(server, tls=_client_context(pki)).status == 200


def test_tls_and_basic_auth(tls_dir: Path, pki: PKI) -> None:
    config = TLS + _users(prometheus=_hash("s3cret"))
    security = WebSecurity.from_file(str(_write(tls_dir, config)))
    with _serving(security) as server:
        tls = _client_context(pki)
        denied = _fetch(server, tls=tls)
        assert denied.status == 401
        assert denied.headers["www-authenticate"].startswith('Basic realm="scenario-exporter"')
        assert _fetch(server, tls=tls, auth=("prometheus", "s3cret")).status == 200


def test_min_version_and_cipher_suites_are_enforced(tls_dir: Path, pki: PKI) -> None:
    config = TLS + ("  max_version: TLS12\n"
                    "  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384]\n")
    with _serving(WebSecurity.from_file(str(_write(tls_dir, config)))) as server:
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
    with _serving(WebSecurity.from_file(str(_write(tls_dir, config13)))) as server:
        old_client = _client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
        assert _refused(lambda: _fetch(server, tls=old_client))
        assert _fetch(server, tls=_client_context(pki)).status == 200


# --- mutual TLS ------------------------------------------------------------------------


def test_mtls_required(tls_dir: Path, pki: PKI, tmp_path_factory: pytest.TempPathFactory,
                       capfd: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path_factory.mktemp("client")
    security = WebSecurity.from_file(str(_write(tls_dir, MTLS)))
    with _serving(security) as server:
        with_cert = _client_context(pki, pki.client, keys)
        assert _fetch(server, tls=with_cert).status == 200
        assert _refused(lambda: _fetch(server, tls=_client_context(pki)))
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: _fetch(server, tls=stranger))
        assert _fetch(server, tls=with_cert).status == 200
    assert capfd.readouterr().err == ""


def test_verify_client_cert_if_given(tls_dir: Path, pki: PKI,
                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    keys = tmp_path_factory.mktemp("client")
    config = MTLS.replace("RequireAndVerifyClientCert", "VerifyClientCertIfGiven")
    with _serving(WebSecurity.from_file(str(_write(tls_dir, config)))) as server:
        assert _fetch(server, tls=_client_context(pki)).status == 200
        assert _fetch(server, tls=_client_context(pki, pki.client, keys)).status == 200
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: _fetch(server, tls=stranger))


def test_request_client_cert_authenticates_nobody_and_says_so(tls_dir: Path, pki: PKI) -> None:
    # Go asks for a certificate and ignores it: the same as not asking.
    config = parse_web_config(_write(tls_dir, TLS + "  client_auth_type: RequestClientCert\n"))
    assert any("does not authenticate clients" in note for note in config.notes)
    with _serving(WebSecurity.from_file(str(config.path))) as server:
        assert _fetch(server, tls=_client_context(pki)).status == 200


# --- basic auth ------------------------------------------------------------------------


def test_basic_auth_only(tmp_path: Path) -> None:
    security = WebSecurity.from_file(str(_write(tmp_path, _users(alice=_hash("pw")))))
    assert security.ssl_context() is None
    with _serving(security) as server:
        assert _fetch(server, auth=("alice", "pw")).status == 200
        assert _fetch(server).status == 401


@pytest.mark.parametrize("credentials", [
    pytest.param({"auth": ("alice", "wrong")}, id="wrong-password"),
    pytest.param({"auth": ("mallory", "pw")}, id="unknown-user"),
    pytest.param({"auth": ("alice", "")}, id="empty-password"),
    pytest.param({"auth": ("Alice", "pw")}, id="username-is-case-sensitive"),
    pytest.param({"authorization": "Bearer cHc="}, id="other-scheme"),
    pytest.param({"authorization": "Basic !!!notbase64"}, id="bad-base64"),
    pytest.param({"authorization": "Basic " + base64.b64encode(b"alicepw").decode()},
                 id="no-colon"),
])
def test_bad_credentials_are_refused(tmp_path: Path, credentials: dict[str, Any]) -> None:
    security = WebSecurity.from_file(str(_write(tmp_path, _users(alice=_hash("pw")))))
    with _serving(security) as server:
        reply = _fetch(server, **credentials)
        assert reply.status == 401
        assert reply.body == b"401 Unauthorized\n"
        assert _fetch(server, auth=("alice", "pw")).status == 200


@pytest.fixture()
def checkpw_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """The hashes bcrypt.checkpw is asked to compare against."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def spy(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", spy)
    return calls


def test_unknown_user_costs_a_bcrypt_check_like_a_known_one(
        tmp_path: Path, checkpw_calls: list[bytes]) -> None:
    alice, bob = _hash("pw", cost=5), _hash("pw", cost=6)
    app = WebSecurity.from_file(str(_write(tmp_path, _users(alice=alice, bob=bob)))).wrap(_app)

    assert call(app, "/metrics", auth=("mallory", "pw"))[0].startswith("401")
    assert len(checkpw_calls) == 1
    decoy = checkpw_calls[0]
    # A decoy, never a real user's hash, at the highest cost in use.
    assert decoy not in (alice.encode(), bob.encode())
    assert decoy[4:6] == b"06"

    assert call(app, "/metrics", auth=("alice", "nope"))[0].startswith("401")
    assert checkpw_calls[1] == alice.encode()


def test_mixed_bcrypt_costs_are_noted(tmp_path: Path) -> None:
    config = parse_web_config(_write(tmp_path, _users(a=_hash("x", cost=4), b=_hash("x", cost=5),
                                                      c=_hash("x", cost=5))))
    assert any("bcrypt costs differ (4, 5)" in note for note in config.notes)
    same = parse_web_config(_write(tmp_path, _users(a=_hash("x"), b=_hash("y"))))
    assert not any("costs differ" in note for note in same.notes)


def test_password_gate_gives_one_place_per_client_in_arrival_order() -> None:
    gate = PasswordGate(slots=1)
    order: list[str] = []
    release = threading.Event()

    def check(client: str) -> None:
        with gate.turn(client) as admitted:
            order.append(client if admitted else f"{client} refused")
            if client == "a" and admitted:
                release.wait(DEADLINE)

    first = threading.Thread(target=check, args=("a",))
    first.start()
    wait_for(lambda: order == ["a"], DEADLINE, "a's check to run")
    # While a's check runs, a second request from a gets no place at all.
    check("a")
    assert order == ["a", "a refused"]
    waiting = []
    for client in ("b", "c"):
        thread = threading.Thread(target=check, args=(client,))
        thread.start()
        waiting.append(thread)
        wait_for(lambda c=client: c in gate._holders, DEADLINE, f"{client} to queue")
    release.set()
    for thread in (first, *waiting):
        thread.join(DEADLINE)
    assert order == ["a", "a refused", "b", "c"]


def test_successes_are_cached_and_failures_are_not(tmp_path: Path,
                                                   checkpw_calls: list[bytes]) -> None:
    app = WebSecurity.from_file(str(_write(tmp_path, _users(alice=_hash("pw"))))).wrap(_app)
    for _ in range(3):
        assert call(app, "/metrics", auth=("alice", "pw"))[0].startswith("200")
    assert len(checkpw_calls) == 1
    for _ in range(3):
        assert call(app, "/metrics", auth=("alice", "guess"))[0].startswith("401")
    assert len(checkpw_calls) == 4


def test_passwords_longer_than_72_bytes_match_like_htpasswd(tmp_path: Path) -> None:
    # htpasswd and Go's bcrypt only ever hash the first 72 bytes.
    password = "x" * 72 + "ignored-tail"
    hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(rounds=4)).decode()
    app = WebSecurity.from_file(str(_write(tmp_path, _users(alice=hashed)))).wrap(_app)
    assert call(app, "/metrics", auth=("alice", password))[0].startswith("200")
    assert call(app, "/metrics", auth=("alice", "x" * 71))[0].startswith("401")


def test_health_endpoints_are_behind_auth_unless_opened(tmp_path: Path) -> None:
    path = str(_write(tmp_path, _users(alice=_hash("pw"))))
    closed = WebSecurity.from_file(path).wrap(_app)
    assert call(closed, "/-/healthy")[0].startswith("401")
    assert call(closed, "/-/ready")[0].startswith("401")

    opened = WebSecurity.from_file(path, open_paths=HEALTH_PATHS).wrap(_app)
    assert call(opened, "/-/healthy")[0].startswith("200")
    assert call(opened, "/-/ready")[0].startswith("200")
    # Exact paths only: nothing below or beside them opens up.
    for other in ("/metrics", "/", "/-/healthy/", "/-/healthy/../../metrics", "/-/ready2"):
        assert call(opened, other)[0].startswith("401"), other


# --- headers ---------------------------------------------------------------------------


def test_configured_headers_are_on_every_response(tmp_path: Path) -> None:
    config = _users(alice=_hash("pw")) + (
        "http_server_config:\n  headers:\n"
        "    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Content-Security-Policy: \"default-src 'none'\"\n"
        "    X-XSS-Protection: 0\n"
        "    Strict-Transport-Security: ''\n")
    security = WebSecurity.from_file(str(_write(tmp_path, config)), open_paths=HEALTH_PATHS)
    with _serving(security) as server:
        for reply in (_fetch(server, auth=("alice", "pw")), _fetch(server),
                      _fetch(server, "/-/healthy")):
            # The operator's value replaces the application's own X-Frame-Options.
            assert reply.headers["x-frame-options"] == "deny"
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.headers["content-security-policy"] == "default-src 'none'"
            assert reply.headers["x-xss-protection"] == "0"
            # Blank means unset, as in the toolkit.
            assert "strict-transport-security" not in reply.headers


@pytest.mark.parametrize(("header", "value", "problem"), [
    ("Content-Security-Policy", '"default-src x\\r\\nSet-Cookie: a=b"',
     "must not contain control characters"),
    ("X-XSS-Protection", '"0\\nX-Injected: 1"', "must not contain control characters"),
    ("Set-Cookie", "a=b", "this header cannot be configured"),
    ("x-frame-options", "deny", "this header cannot be configured"),
    ("X-Frame-Options", "allow-from https://evil.example", "must be one of deny, sameorigin"),
    ("X-Content-Type-Options", "sniff", "must be one of nosniff"),
])
def test_header_injection_is_refused(tmp_path: Path, header: str, value: str,
                                     problem: str) -> None:
    # Values are YAML as written: double quotes turn \\r\\n into CR LF.
    text = f"http_server_config:\n  headers:\n    {header}: {value}\n"
    path = _write(tmp_path, text)
    with pytest.raises(WebConfigError) as caught:
        WebSecurity.from_file(str(path))
    assert str(caught.value).startswith(f"web config {path}: http_server_config.headers.{header}: ")
    assert problem in str(caught.value)
    assert "\n" not in str(caught.value)


# --- reloading -------------------------------------------------------------------------


def test_new_password_works_after_rewrite(tmp_path: Path) -> None:
    path = _write(tmp_path, _users(alice=_hash("old")))
    security = WebSecurity.from_file(str(path), reload_interval=FAST)
    with _serving(security) as server:
        assert _fetch(server, auth=("alice", "old")).status == 200
        _write(tmp_path, _users(alice=_hash("new"), bob=_hash("bob")))
        wait_for(lambda: _fetch(server, auth=("alice", "new")).status == 200, DEADLINE,
                 "the new password")
        # The old password's cached success does not outlive its hash.
        assert _fetch(server, auth=("alice", "old")).status == 401
        assert _fetch(server, auth=("bob", "bob")).status == 200


@pytest.mark.parametrize(("broken", "expected"), [
    ("basic_auth_users:\n  alice: not-a-hash-and-secret\n",
     "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users: " + "{a: " * 600 + "1" + "}" * 600 + "\n",
     "nested deeper than 32 levels at line 1"),
], ids=["bad-hash", "deep"])
def test_a_broken_rewrite_keeps_the_last_good_config(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     broken: str, expected: str) -> None:
    path = _write(tmp_path, _users(alice=_hash("pw")))
    security = WebSecurity.from_file(str(path), reload_interval=FAST)
    app = security.wrap(_app)
    caplog.set_level(logging.DEBUG)
    _write(tmp_path, broken)

    def failures() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.levelno >= logging.ERROR]

    wait_for(lambda: call(app, "/metrics", auth=("alice", "pw"))[0].startswith("200")
             and bool(failures()), DEADLINE, "the reload error")
    # Checked again many times, the same broken file is reported once.
    until = time.monotonic() + 10 * FAST
    while time.monotonic() < until:
        assert call(app, "/metrics", auth=("alice", "pw"))[0].startswith("200")
        time.sleep(FAST / 5)
    assert len(failures()) == 1
    assert "not applied" in failures()[0].getMessage()
    error = failures()[0].__dict__["fields"]["error"]
    assert expected in error
    assert "not-a-hash-and-secret" not in error
    assert not any(r.exc_info for r in caplog.records)

    _write(tmp_path, _users(alice=_hash("fixed")))
    wait_for(lambda: call(app, "/metrics", auth=("alice", "fixed"))[0].startswith("200"),
             DEADLINE, "the fixed config")


def test_sighup_style_reload_applies_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, _users(alice=_hash("old")))
    security = WebSecurity.from_file(str(path), reload_interval=3600)
    _write(tmp_path, _users(alice=_hash("new")))
    assert call(security.wrap(_app), "/metrics", auth=("alice", "new"))[0].startswith("401")
    security.reload()
    assert call(security.wrap(_app), "/metrics", auth=("alice", "new"))[0].startswith("200")


def test_rotated_certificate_is_served_after_rewrite(tls_dir: Path, pki: PKI) -> None:
    security = WebSecurity.from_file(str(_write(tls_dir, TLS)), reload_interval=FAST)
    with _serving(security) as server:
        tls = _client_context(pki)
        assert _fetch(server, tls=tls).peer_cert == pki.server.der
        pki.server_rotated.write(tls_dir, "tls.crt", "tls.key")
        wait_for(lambda: _fetch(server, tls=tls).peer_cert == pki.server_rotated.der,
                 DEADLINE, "the rotated certificate")
        assert _fetch(server, tls=tls).status == 200


def test_rotated_client_ca_applies_after_rewrite(tls_dir: Path, pki: PKI,
                                                 tmp_path_factory: pytest.TempPathFactory) -> None:
    keys = tmp_path_factory.mktemp("client")
    security = WebSecurity.from_file(str(_write(tls_dir, MTLS)), reload_interval=FAST)
    with _serving(security) as server:
        stranger = _client_context(pki, pki.other_client, keys)
        assert _refused(lambda: _fetch(server, tls=stranger))
        (tls_dir / "ca.crt").write_bytes(pki.other_ca.cert)
        wait_for(lambda: not _refused(lambda: _fetch(server, tls=stranger)), DEADLINE,
                 "the new client CA")
        client_keys = tmp_path_factory.mktemp("client")
        assert _refused(lambda: _fetch(server, tls=_client_context(pki, pki.client, client_keys)))


def test_tls_cannot_be_switched_off_by_a_reload(tls_dir: Path, pki: PKI,
                                                caplog: pytest.LogCaptureFixture) -> None:
    security = WebSecurity.from_file(str(_write(tls_dir, TLS)), reload_interval=FAST)
    with _serving(security) as server:
        _write(tls_dir, _users(alice=_hash("pw")))

        def refused() -> bool:
            # Each connection looks for changes; the TLS one keeps being served.
            assert _fetch(server, tls=_client_context(pki)).status == 200
            return any("switched on or off" in str(r.__dict__.get("fields"))
                       for r in caplog.records)

        wait_for(refused, DEADLINE, "the refusal")
        assert security.config.tls is not None
        assert not security.config.users


# --- invalid files -------------------------------------------------------------------------


INVALID = [
    ("unknown: 1\n", "unknown", "unknown setting"),
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  certfile: x\n",
     "tls_server_config.certfile", "unknown setting"),
    ("http_server_config:\n  http3: true\n", "http_server_config.http3", "unknown setting"),
    ("tls_server_config:\n  key_file: tls.key\n", "tls_server_config.cert_file", "required"),
    ("tls_server_config:\n  cert_file: tls.crt\n", "tls_server_config.key_file", "required"),
    ("tls_server_config:\n  cert_file: missing.crt\n  key_file: tls.key\n",
     "tls_server_config.cert_file", "file not found"),
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: other.key\n",
     "tls_server_config.key_file", "does not match the certificate"),
    ("tls_server_config:\n  cert_file: tls.key\n  key_file: tls.key\n",
     "tls_server_config.cert_file", "no PEM certificate"),
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.crt\n",
     "tls_server_config.key_file", "no PEM private key"),
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: encrypted.key\n",
     "tls_server_config.key_file", "encrypted"),
    (TLS + "  client_auth_type: Always\n", "tls_server_config.client_auth_type",
     "must be one of"),
    (TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
     "tls_server_config.client_auth_type", "not supported"),
    (TLS + "  client_ca_file: ca.crt\n", "tls_server_config.client_ca_file",
     "client_auth_type is NoClientCert"),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file", "required"),
    (TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: empty.pem\n",
     "tls_server_config.client_ca_file", "no usable PEM CA certificate"),
    (TLS + "  min_version: TLS10\n", "tls_server_config.min_version", "not supported"),
    (TLS + "  min_version: TLS14\n", "tls_server_config.min_version", "must be one of"),
    (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.max_version",
     "lower than min_version"),
    (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256, RC4]\n",
     "tls_server_config.cipher_suites[1]", "unknown cipher suite"),
    (TLS + "  client_allowed_sans: [prometheus]\n", "tls_server_config.client_allowed_sans",
     "not supported"),
    (TLS + "  prefer_server_cipher_suites: 'yes'\n",
     "tls_server_config.prefer_server_cipher_suites", "must be true or false"),
    ("rate_limit:\n  interval: 1s\n", "rate_limit", "not supported"),
    ("basic_auth_users:\n  alice: not-a-hash-and-secret\n", "basic_auth_users.alice",
     "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': '$2y$04$" + "a" * 53 + "'\n", "basic_auth_users.a:b",
     "cannot contain ':'"),
    ("basic_auth_users:\n  alice: '$2y$99$" + "a" * 53 + "'\n", "basic_auth_users.alice",
     "cost"),
    ("basic_auth_users: [alice]\n", "basic_auth_users", "must be a mapping"),
    ("http_server_config:\n  headers: deny\n", "http_server_config.headers",
     "must be a mapping"),
    ("basic_auth_users:\n  alice: x\nbasic_auth_users:\n  bob: y\n", "", "duplicate key"),
    ("tls_server_config: [\n", "", "invalid YAML"),
    ("- a\n- b\n", "", "must be a YAML mapping"),
    # Typos at any depth name the key probably meant.
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  min_verison: TLS13\n",
     "tls_server_config.min_verison", "did you mean tls_server_config.min_version?"),
    ("http_server_config:\n  heders: {}\n", "http_server_config.heders",
     "did you mean http_server_config.headers?"),
    ("basic_auth_user:\n  alice: x\n", "basic_auth_user", "did you mean basic_auth_users?"),
    # Bounded: nesting, aliases, size; no RecursionError and no traceback.
    ("x: " + "[" * 600 + "]" * 600 + "\n", "", "nested deeper than 32 levels"),
    ("basic_auth_users: &u {}\nx: *u\n", "", "aliases"),
    ("# " + "x" * 1024 * 1024 + "\n", "", "larger than 1024 KiB"),
    (TLS + "  min_version: TLS13-and-then-a-secret\n", "tls_server_config.min_version",
     "got 'TLS'… (23 characters)"),
]


@pytest.mark.parametrize(("text", "field", "problem"), INVALID,
                         ids=[f"{i:02d}-{f or p}" for i, (_, f, p) in enumerate(INVALID)])
def test_invalid_files_fail_with_one_line_naming_the_field(
        tls_dir: Path, pki: PKI, text: str, field: str, problem: str) -> None:
    pki.server_rotated.write(tls_dir, "other.crt", "other.key")
    (tls_dir / "empty.pem").write_text("no certificate here\n")
    key = serialization.load_pem_private_key(pki.server.key, password=None)
    (tls_dir / "encrypted.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    path = _write(tls_dir, text)

    with pytest.raises(WebConfigError) as caught:
        WebSecurity.from_file(str(path))
    message = str(caught.value)
    prefix = f"web config {path}: " + (f"{field}: " if field else "")
    assert message.startswith(prefix), message
    assert problem in message
    assert "\n" not in message
    assert "not-a-hash-and-secret" not in message
    assert caught.value.field == field


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"^web config .*/absent\.yml: file not found$"):
        WebSecurity.from_file(str(tmp_path / "absent.yml"))


def test_repr_never_shows_the_hashes(tmp_path: Path) -> None:
    hashed = _hash("pw")
    config = parse_web_config(_write(tmp_path, _users(alice=hashed)))
    assert config.usernames == ["alice"]
    assert hashed not in repr(config)


# --- shipped examples ------------------------------------------------------------------------


def test_the_examples_are_shipped() -> None:
    assert {p.name for p in EXAMPLES} >= {"basic-auth.yml", "tls.yml", "tls-basic-auth.yml",
                                          "mtls.yml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_promtool_and_loads(example: Path, tls_dir: Path) -> None:
    promtool = require_tool("promtool")
    # promtool loads the certificate files the example names (relative to the
    # example), so check a verbatim copy next to freshly made ones.
    copy = tls_dir / example.name
    shutil.copyfile(example, copy)
    result = subprocess.run([promtool, "check", "web-config", str(copy)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr

    security = WebSecurity.from_file(str(copy))
    assert (security.ssl_context() is not None) == ("tls_server_config" in example.read_text())
