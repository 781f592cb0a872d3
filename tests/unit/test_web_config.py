"""``exporter.web.config``: the whole ``--web.config.file`` validated into a WebConfig:
basic-auth users and their hashes, response headers, the notes for the operator, a
missing file; and the shipped examples, which promtool must accept too.

The format itself is in test_web_schema.py, ``tls_server_config`` in test_web_tls.py.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from exporter.web.config import parse_web_config
from exporter.web.schema import WebConfigError
from exporter.web.security import WebSecurity
from testkit.pki import PKI, make_pki
from testkit.repo import REPO_ROOT
from testkit.tools import require_tool
from testkit.webconfig import (
    NOT_A_HASH,
    assert_refused,
    bcrypt_hash,
    refusal_ids,
    users,
    write_config,
)

EXAMPLES = sorted((REPO_ROOT / "examples" / "web-config").glob("*.yml"))


@pytest.fixture(scope="module")
def pki() -> PKI:
    return make_pki()


# --- basic_auth_users ----------------------------------------------------------------


INVALID = [
    (f"basic_auth_users:\n  alice: {NOT_A_HASH}\n", "basic_auth_users.alice",
     "not a bcrypt hash"),
    ("basic_auth_users:\n  'a:b': '$2y$04$" + "a" * 53 + "'\n", "basic_auth_users.a:b",
     "cannot contain ':'"),
    ("basic_auth_users:\n  alice: '$2y$99$" + "a" * 53 + "'\n", "basic_auth_users.alice",
     "cost"),
]


@pytest.mark.parametrize(("text", "field", "problem"), INVALID, ids=refusal_ids(INVALID))
def test_invalid_files_fail_with_one_line_naming_the_field(
        tmp_path: Path, text: str, field: str, problem: str) -> None:
    assert_refused(write_config(tmp_path, text), field, problem)


def test_mixed_bcrypt_costs_are_noted(tmp_path: Path) -> None:
    config = parse_web_config(write_config(tmp_path, users(
        a=bcrypt_hash("x", cost=4), b=bcrypt_hash("x", cost=5), c=bcrypt_hash("x", cost=5))))
    assert any("bcrypt costs differ (4, 5)" in note for note in config.notes)
    same = parse_web_config(write_config(tmp_path, users(a=bcrypt_hash("x"),
                                                         b=bcrypt_hash("y"))))
    assert not any("costs differ" in note for note in same.notes)


def test_repr_never_shows_the_hashes(tmp_path: Path) -> None:
    hashed = bcrypt_hash("pw")
    config = parse_web_config(write_config(tmp_path, users(alice=hashed)))
    assert config.usernames == ["alice"]
    assert hashed not in repr(config)


# --- headers ---------------------------------------------------------------------------


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
    assert_refused(write_config(tmp_path, text), f"http_server_config.headers.{header}",
                   problem)


# --- the file --------------------------------------------------------------------------


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(WebConfigError, match=r"^web config .*/absent\.yml: file not found$"):
        WebSecurity.from_file(str(tmp_path / "absent.yml"))


def test_the_examples_are_shipped() -> None:
    assert {p.name for p in EXAMPLES} >= {"basic-auth.yml", "tls.yml", "tls-basic-auth.yml",
                                          "mtls.yml"}


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_passes_promtool_and_loads(example: Path, tmp_path: Path, pki: PKI) -> None:
    promtool = require_tool("promtool")
    # promtool loads the certificate files the example names (relative to the
    # example), so check a verbatim copy next to freshly made ones.
    copy = pki.write_secret(tmp_path) / example.name
    shutil.copyfile(example, copy)
    result = subprocess.run([promtool, "check", "web-config", str(copy)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr

    security = WebSecurity.from_file(str(copy))
    assert (security.ssl_context() is not None) == ("tls_server_config" in example.read_text())
