"""``exporter.web.schema``: the ``--web.config.file`` format (YAML, known keys, types)
and its errors, one line naming the field, for a file that is not in it.

TLS settings the format allows but the server refuses are in test_web_tls.py;
users are in test_web_config.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from testkit.webconfig import TLS, assert_refused, refusal_ids, write_config

INVALID = [
    ("unknown: 1\n", "unknown", "unknown setting"),
    ("tls_server_config:\n  cert_file: tls.crt\n  key_file: tls.key\n  certfile: x\n",
     "tls_server_config.certfile", "unknown setting"),
    ("http_server_config:\n  http3: true\n", "http_server_config.http3", "unknown setting"),
    (TLS + "  client_auth_type: Always\n", "tls_server_config.client_auth_type",
     "must be one of"),
    (TLS + "  min_version: TLS14\n", "tls_server_config.min_version", "must be one of"),
    (TLS + "  client_allowed_sans: [prometheus]\n", "tls_server_config.client_allowed_sans",
     "not supported"),
    (TLS + "  prefer_server_cipher_suites: 'yes'\n",
     "tls_server_config.prefer_server_cipher_suites", "must be true or false"),
    ("rate_limit:\n  interval: 1s\n", "rate_limit", "not supported"),
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
    ("# " + "x" * 16 * 1024 * 1024 + "\n", "", "larger than 16384 KiB"),
    (TLS + "  min_version: TLS13-and-then-a-secret\n", "tls_server_config.min_version",
     "got 'TLS'… (23 characters)"),
]


@pytest.mark.parametrize(("text", "field", "problem"), INVALID, ids=refusal_ids(INVALID))
def test_invalid_files_fail_with_one_line_naming_the_field(
        tmp_path: Path, text: str, field: str, problem: str) -> None:
    # The format is checked before any file the config names is looked for.
    assert_refused(write_config(tmp_path, text), field, problem)
