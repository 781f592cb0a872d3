"""``exporter.web.tls``: the ``tls_server_config`` that the format allows but the server
refuses (missing or mismatched files, unsupported client auth and versions, unknown
cipher suites), each with one line naming the field.

Handshakes with the SSL contexts it builds are in tests/component/test_web_handshakes.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from testkit.pki import PKI, make_pki
from testkit.webconfig import TLS, assert_refused, refusal_ids, write_config


@pytest.fixture(scope="module")
def pki() -> PKI:
    return make_pki()


INVALID = [
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
    (TLS + "  client_auth_type: RequireAnyClientCert\n  client_ca_file: ca.crt\n",
     "tls_server_config.client_auth_type", "not supported"),
    (TLS + "  client_ca_file: ca.crt\n", "tls_server_config.client_ca_file",
     "client_auth_type is NoClientCert"),
    (TLS + "  client_auth_type: RequireAndVerifyClientCert\n",
     "tls_server_config.client_ca_file", "required"),
    (TLS + "  client_auth_type: VerifyClientCertIfGiven\n  client_ca_file: empty.pem\n",
     "tls_server_config.client_ca_file", "no usable PEM CA certificate"),
    (TLS + "  min_version: TLS10\n", "tls_server_config.min_version", "not supported"),
    (TLS + "  min_version: TLS13\n  max_version: TLS12\n", "tls_server_config.max_version",
     "lower than min_version"),
    (TLS + "  cipher_suites: [TLS_AES_128_GCM_SHA256, RC4]\n",
     "tls_server_config.cipher_suites[1]", "unknown cipher suite"),
]


@pytest.mark.parametrize(("text", "field", "problem"), INVALID, ids=refusal_ids(INVALID))
def test_invalid_files_fail_with_one_line_naming_the_field(
        tmp_path: Path, pki: PKI, text: str, field: str, problem: str) -> None:
    tls_dir = pki.write_secret(tmp_path)
    pki.server_rotated.write(tls_dir, "other.crt", "other.key")
    (tls_dir / "empty.pem").write_text("no certificate here\n")
    key = serialization.load_pem_private_key(pki.server.key, password=None)
    (tls_dir / "encrypted.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase")))
    assert_refused(write_config(tls_dir, text), field, problem)
