"""Reaching upstream as operators deploy the exporter: the key and the secret
from files that Kubernetes rotates, and a CA of their own added to the trusted
ones (a TLS-intercepting proxy). The real process against the loopback fake.

Reading the files at start, and refusing a CA file that holds no certificate, are
tested in process in ``tests/unit/test_config.py``; a file gone at a refresh in
``tests/unit/test_client.py``.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter.upstream.demo import DemoAccount
from testkit.fake_upstream import FakeUpstream
from testkit.pki import Identity, certificate_authority, issue, replace_file
from testkit.processes import ExporterProcess, Processes
from testkit.waiting import wait_for
from testkit.web import basic_authorization

DEADLINE = 40.0  # covers one back-off step (10 s + jitter) should a refresh race a rotation


def _write(path: Path, text: str) -> None:
    """Replace *path* at once with a line of *text*, as the kubelet swaps a Secret's files."""
    replace_file(path, (text + "\n").encode())


def _serving(exporter: ExporterProcess, account: str = "default") -> bool:
    return exporter.metrics().value("scenario_up", account=account) == 1


# --- SCENARIO_API_KEY_FILE -------------------------------------------------------------------


def test_rotated_key_and_secret_files_apply_without_a_restart(processes: Processes,
                                                              tmp_path: Path) -> None:
    key_file, secret_file = tmp_path / "api-key", tmp_path / "api-secret"
    _write(key_file, "key-one")
    _write(secret_file, "secret-one")
    with FakeUpstream(DemoAccount(models=4, users=2), "key-one", "secret-one") as fake:
        exporter = processes.start(
            # a refresh every second: the hourly cap paces refreshes (60: one a minute)
            "--cache.ttl", "1s", "--upstream.max-requests-per-hour", "3600",
            env={"SCENARIO_API_KEY_FILE": str(key_file),
                 "SCENARIO_API_SECRET_FILE": str(secret_file),
                 "SCENARIO_EXPORTER_SCENARIO_API_URL": fake.url})
        wait_for(lambda: _serving(exporter), DEADLINE, "data with the first key")

        # The pair is rotated: upstream accepts only the new one, the files hold it.
        with fake.state.lock:
            fake.state.api_key, fake.state.api_secret = "key-two", "secret-two"
            seen = len(fake.state.requests)
        _write(key_file, "key-two")
        _write(secret_file, "secret-two")
        rotated_at = time.time()

        def new_data() -> bool:
            as_of = exporter.metrics().value("scenario_data_as_of_timestamp_seconds",
                                             account="default")
            return _serving(exporter) and as_of is not None and as_of > rotated_at

        wait_for(new_data, DEADLINE, "data fetched with the rotated pair",
                 lambda: "\n".join(exporter.stderr_lines[-5:]))
        with fake.state.lock:
            sent = [r.authorization for r in fake.state.requests[seen:]]
        assert basic_authorization("key-two", "secret-two") in sent
        assert exporter.proc.poll() is None, "the same process, not restarted"


# --- --upstream.ca-file ----------------------------------------------------------------------


def _https_upstream(server: Identity, directory: Path) -> FakeUpstream:
    (directory / "server.pem").write_bytes(server.cert)
    (directory / "server.key").write_bytes(server.key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "server.pem", directory / "server.key")
    return FakeUpstream(DemoAccount(models=4, users=2), "k", "s", tls=context)


@dataclass(frozen=True)
class Trust:
    """Two CAs as PEM files, and a server certificate signed by each."""

    default_ca: Path
    proxy_ca: Path
    servers: dict[str, Identity]
    directory: Path


@pytest.fixture(scope="module")
def trust(tmp_path_factory: pytest.TempPathFactory) -> Trust:
    directory = tmp_path_factory.mktemp("cas")
    servers = {}
    for name in ("default", "proxy"):
        ca, signer = certificate_authority(f"{name} CA")
        (directory / f"{name}-ca.pem").write_bytes(ca.cert)
        (directory / name).mkdir()
        servers[name] = issue("upstream", signer, server=True)
    return Trust(directory / "default-ca.pem", directory / "proxy-ca.pem", servers, directory)


@pytest.mark.parametrize(("signed_by", "with_ca_file", "served"), [
    ("proxy", False, False),   # the proxy's CA is not trusted by default
    ("proxy", True, True),     # --upstream.ca-file makes it trusted
    ("default", True, True),   # ... in addition to the default trust, not instead of it
])
def test_ca_file_adds_to_the_default_trust(processes: Processes, trust: Trust, signed_by: str,
                                           with_ca_file: bool, served: bool) -> None:
    with _https_upstream(trust.servers[signed_by], trust.directory / signed_by) as fake:
        assert fake.url.startswith("https://127.0.0.1:")
        # The "default trust" is what httpx reads from SSL_CERT_FILE when set.
        env = {"SCENARIO_API_KEY": "k", "SCENARIO_API_SECRET": "s",
               "SCENARIO_EXPORTER_SCENARIO_API_URL": fake.url,
               "SSL_CERT_FILE": str(trust.default_ca)}
        args = ["--upstream.ca-file", str(trust.proxy_ca)] if with_ca_file else []
        exporter = processes.start(*args, env=env)
        if served:
            wait_for(lambda: _serving(exporter), DEADLINE, "data over HTTPS",
                     lambda: "\n".join(exporter.stderr_lines[-5:]))
            assert fake.request_count >= 1
        else:
            line = exporter.wait_for_line(lambda text: "status=error" in text)
            assert "reason=connection_error" in line
            assert exporter.metrics().value("scenario_up", account="default") == 0
            assert fake.request_count == 0, "no request got past the TLS handshake"
