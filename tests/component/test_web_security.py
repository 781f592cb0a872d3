"""``exporter.web.security``: the WSGI guard of ``--web.config.file`` in front of an
application, called in-process or served on loopback: basic auth (bad credentials, a
decoy check for unknown users, the cache, long passwords, open health paths), the
configured headers, and users reloaded from a rewritten file.

TLS and client certificates, served, are in test_web_handshakes.py.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import bcrypt
import pytest

from exporter.web.security import HEALTH_PATHS, WebSecurity
from testkit.waiting import wait_for
from testkit.web import basic_authorization, call
from testkit.webconfig import (
    DEADLINE,
    FAST,
    NOT_A_HASH,
    bcrypt_hash,
    fetch,
    ok_app,
    serving_guarded,
    users,
    write_config,
)

# --- basic auth ------------------------------------------------------------------------


def test_basic_auth_only(tmp_path: Path) -> None:
    security = WebSecurity.from_file(str(write_config(tmp_path, users(alice=bcrypt_hash("pw")))))
    assert security.ssl_context() is None
    with serving_guarded(security) as server:
        assert fetch(server, auth=("alice", "pw")).status == 200
        assert fetch(server).status == 401


@pytest.mark.parametrize("credentials", [
    pytest.param({"auth": ("alice", "wrong")}, id="wrong-password"),
    pytest.param({"auth": ("mallory", "pw")}, id="unknown-user"),
    pytest.param({"auth": ("alice", "")}, id="empty-password"),
    pytest.param({"auth": ("Alice", "pw")}, id="username-is-case-sensitive"),
    pytest.param({"authorization": "Bearer cHc="}, id="other-scheme"),
    pytest.param({"authorization": "Basic !!!notbase64"}, id="bad-base64"),
    pytest.param({"authorization": basic_authorization("alicepw")}, id="no-colon"),
])
def test_bad_credentials_are_refused(tmp_path: Path, credentials: dict[str, Any]) -> None:
    security = WebSecurity.from_file(str(write_config(tmp_path, users(alice=bcrypt_hash("pw")))))
    with serving_guarded(security) as server:
        reply = fetch(server, **credentials)
        assert reply.status == 401
        assert reply.body == b"401 Unauthorized\n"
        assert fetch(server, auth=("alice", "pw")).status == 200


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
    alice, bob = bcrypt_hash("pw", cost=5), bcrypt_hash("pw", cost=6)
    path = write_config(tmp_path, users(alice=alice, bob=bob))
    app = WebSecurity.from_file(str(path)).wrap(ok_app)

    assert call(app, "/metrics", auth=("mallory", "pw"))[0].startswith("401")
    assert len(checkpw_calls) == 1
    decoy = checkpw_calls[0]
    # A decoy, never a real user's hash, at the highest cost in use.
    assert decoy not in (alice.encode(), bob.encode())
    assert decoy[4:6] == b"06"

    assert call(app, "/metrics", auth=("alice", "nope"))[0].startswith("401")
    assert checkpw_calls[1] == alice.encode()


def test_successes_are_cached_and_failures_are_not(tmp_path: Path,
                                                   checkpw_calls: list[bytes]) -> None:
    path = write_config(tmp_path, users(alice=bcrypt_hash("pw")))
    app = WebSecurity.from_file(str(path)).wrap(ok_app)
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
    app = WebSecurity.from_file(str(write_config(tmp_path, users(alice=hashed)))).wrap(ok_app)
    assert call(app, "/metrics", auth=("alice", password))[0].startswith("200")
    assert call(app, "/metrics", auth=("alice", "x" * 71))[0].startswith("401")


def test_health_endpoints_are_behind_auth_unless_opened(tmp_path: Path) -> None:
    path = str(write_config(tmp_path, users(alice=bcrypt_hash("pw"))))
    closed = WebSecurity.from_file(path).wrap(ok_app)
    assert call(closed, "/-/healthy")[0].startswith("401")
    assert call(closed, "/-/ready")[0].startswith("401")

    opened = WebSecurity.from_file(path, open_paths=HEALTH_PATHS).wrap(ok_app)
    assert call(opened, "/-/healthy")[0].startswith("200")
    assert call(opened, "/-/ready")[0].startswith("200")
    # Exact paths only: nothing below or beside them opens up.
    for other in ("/metrics", "/", "/-/healthy/", "/-/healthy/../../metrics", "/-/ready2"):
        assert call(opened, other)[0].startswith("401"), other


# --- headers ---------------------------------------------------------------------------


def test_configured_headers_are_on_every_response(tmp_path: Path) -> None:
    config = users(alice=bcrypt_hash("pw")) + (
        "http_server_config:\n  headers:\n"
        "    X-Frame-Options: deny\n"
        "    X-Content-Type-Options: nosniff\n"
        "    Content-Security-Policy: \"default-src 'none'\"\n"
        "    X-XSS-Protection: 0\n"
        "    Strict-Transport-Security: ''\n")
    security = WebSecurity.from_file(str(write_config(tmp_path, config)), open_paths=HEALTH_PATHS)
    with serving_guarded(security) as server:
        for reply in (fetch(server, auth=("alice", "pw")), fetch(server),
                      fetch(server, "/-/healthy")):
            # The operator's value replaces the application's own X-Frame-Options.
            assert reply.headers["x-frame-options"] == "deny"
            assert reply.headers["x-content-type-options"] == "nosniff"
            assert reply.headers["content-security-policy"] == "default-src 'none'"
            assert reply.headers["x-xss-protection"] == "0"
            # Blank means unset, as in the toolkit.
            assert "strict-transport-security" not in reply.headers


# --- reloading -------------------------------------------------------------------------


def test_new_password_works_after_rewrite(tmp_path: Path) -> None:
    path = write_config(tmp_path, users(alice=bcrypt_hash("old")))
    security = WebSecurity.from_file(str(path), reload_interval=FAST)
    with serving_guarded(security) as server:
        assert fetch(server, auth=("alice", "old")).status == 200
        write_config(tmp_path, users(alice=bcrypt_hash("new"), bob=bcrypt_hash("bob")))
        wait_for(lambda: fetch(server, auth=("alice", "new")).status == 200, DEADLINE,
                 "the new password")
        # The old password's cached success does not outlive its hash.
        assert fetch(server, auth=("alice", "old")).status == 401
        assert fetch(server, auth=("bob", "bob")).status == 200


@pytest.mark.parametrize(("broken", "expected"), [
    (f"basic_auth_users:\n  alice: {NOT_A_HASH}\n",
     "basic_auth_users.alice: not a bcrypt hash"),
    ("basic_auth_users: " + "{a: " * 600 + "1" + "}" * 600 + "\n",
     "nested deeper than 32 levels at line 1"),
], ids=["bad-hash", "deep"])
def test_a_broken_rewrite_keeps_the_last_good_config(tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture,
                                                     broken: str, expected: str) -> None:
    path = write_config(tmp_path, users(alice=bcrypt_hash("pw")))
    security = WebSecurity.from_file(str(path), reload_interval=FAST)
    app = security.wrap(ok_app)
    caplog.set_level(logging.DEBUG)
    write_config(tmp_path, broken)

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
    assert NOT_A_HASH not in error
    assert not any(r.exc_info for r in caplog.records)

    write_config(tmp_path, users(alice=bcrypt_hash("fixed")))
    wait_for(lambda: call(app, "/metrics", auth=("alice", "fixed"))[0].startswith("200"),
             DEADLINE, "the fixed config")


def test_sighup_style_reload_applies_at_once(tmp_path: Path) -> None:
    path = write_config(tmp_path, users(alice=bcrypt_hash("old")))
    security = WebSecurity.from_file(str(path), reload_interval=3600)
    write_config(tmp_path, users(alice=bcrypt_hash("new")))
    assert call(security.wrap(ok_app), "/metrics", auth=("alice", "new"))[0].startswith("401")
    security.reload()
    assert call(security.wrap(ok_app), "/metrics", auth=("alice", "new"))[0].startswith("200")
