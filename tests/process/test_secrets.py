"""The API secret never shows: not in a log line (debug level included), not on a page,
not in the message of a failed start, not in ``check`` output, not in ``repr()``.

The real process is run against the loopback fake with a distinctive secret, and
everything it writes or serves is searched for the secret, pieces of it, and its
HTTP Basic encoding ``base64(key:secret)``. Each scenario also proves that the
secret was really in play (the fake received it, the failure really happened),
so that a test cannot pass by never touching the secret.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from exporter.config.load import build_settings
from exporter.config.settings import Settings
from exporter.core.account import AccountConfig
from exporter.upstream.demo import DemoAccount
from testkit.exposition import Exposition
from testkit.fake_upstream import FakeUpstream
from testkit.processes import ExporterProcess, Processes
from testkit.web import basic_authorization

SECRET = "s3cr3t-Zq8vX1-do-not-leak"
API_KEY = "leaktest-key-7"
BASIC = basic_authorization(API_KEY, SECRET).removeprefix("Basic ")
# The secret, recognisable pieces of it (a truncated or partly masked secret is
# still a leak), and its Basic encodings.
FORBIDDEN = (SECRET, "s3cr3t", "Zq8vX1", "do-not-leak", BASIC,
             base64.urlsafe_b64encode(f"{API_KEY}:{SECRET}".encode()).decode(),
             BASIC.rstrip("="), base64.b64encode(SECRET.encode()).decode().rstrip("="))


def assert_no_secret(text: str, where: str) -> None:
    for needle in FORBIDDEN:
        assert needle not in text, f"{needle!r} leaked in {where}:\n{text}"


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeUpstream]:
    with FakeUpstream(DemoAccount(models=8, users=4), API_KEY, SECRET) as upstream:
        yield upstream


def credentials(source: str, tmp_path: Path, name: str = "team-a") -> tuple[list[str],
                                                                          dict[str, str]]:
    """Flags and environment giving the secret in one of the supported ways."""
    if source == "env":
        return [], {"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": SECRET}
    if source == "sdk-env":
        return [], {"SCENARIO_SDK_API_KEY": API_KEY, "SCENARIO_SDK_API_SECRET": SECRET}
    if source == "file":
        path = tmp_path / "secret"
        path.write_text(SECRET + "\n")
        return [], {"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET_FILE": str(path)}
    if source == "yaml":
        path = tmp_path / "config.yaml"
        path.write_text(f"accounts:\n  - name: {name}\n    api_key: {API_KEY}\n"
                        f"    api_secret: {SECRET}\n")
        return ["--config.file", str(path)], {}
    raise AssertionError(source)


def everything_written(proc: ExporterProcess) -> str:
    return "\n".join(proc.stdout_lines + proc.stderr_lines)


def page_text(response: httpx.Response) -> str:
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
    return f"{response.status_code}\n{headers}\n\n{response.text}"


# -- the running exporter ------------------------------------------------------------------


SERVE_CASES = [
    # upstream mode, log format, where the secret comes from
    pytest.param("ok", "logfmt", "env", id="ok-logfmt-env"),
    pytest.param("ok", "json", "file", id="ok-json-file"),
    pytest.param("401", "logfmt", "sdk-env", id="401-logfmt-sdk-env"),
    pytest.param("401", "json", "yaml", id="401-json-yaml"),
    pytest.param("500", "logfmt", "yaml", id="500-logfmt-yaml"),
    pytest.param("500", "json", "env", id="500-json-env"),
    pytest.param("garbage", "logfmt", "file", id="garbage-logfmt-file"),
    pytest.param("garbage", "json", "sdk-env", id="garbage-json-env"),
]


@pytest.mark.parametrize("mode, log_format, source", SERVE_CASES)
def test_serving_never_shows_the_secret(processes: Processes, fake: FakeUpstream,
                                        tmp_path: Path, mode: str, log_format: str,
                                        source: str) -> None:
    fake.set_mode(mode)
    flags, env = credentials(source, tmp_path)
    account = "team-a" if source == "yaml" else "default"
    proc = processes.start("--web.listen-address", "127.0.0.1:0", "--scenario.api-url",
                           fake.url, "--log.level", "debug", "--log.format", log_format,
                           "--cache.ttl", "1s", *flags, env=env)
    proc.wait_ready(timeout=15)  # the first refresh attempt is over

    pages = [proc.get(path) for path in ("/metrics", "/", "/-/ready", "/-/healthy", "/nope")]
    pages.append(proc.get("/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"}))
    pages.append(proc.get("/metrics", {"Accept-Encoding": "gzip"}))  # httpx decodes it
    expo = Exposition.parse(pages[0].text)
    up = expo.value("scenario_up", account=account)
    assert up == (1.0 if mode == "ok" else 0.0), "the scenario did not happen"
    # The debug line of the upstream call, and (for failures) the error, were logged.
    proc.wait_for_line(lambda line: "upstream response" in line and "debug" in line)
    if mode != "ok":
        proc.wait_for_line(lambda line: "refresh failed" in line)
        assert "down" in pages[1].text
    assert proc.terminate() == 0
    proc.wait()

    # The secret was in play: the fake received it, Basic-encoded, on every call.
    assert fake.request_count >= 1
    assert {r.authorization for r in fake.state.requests} == {f"Basic {BASIC}"}
    assert any("debug" in line for line in proc.stderr_lines)
    assert_no_secret(everything_written(proc), f"the output of {proc.args}")
    for response in pages:
        assert_no_secret(page_text(response), f"{response.request.url}")


# -- failed starts ------------------------------------------------------------------------


def _busy_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


FAILED_STARTS = [
    # args, environment besides the credentials, the setting the message must name
    pytest.param(["--cache.ttl", "soon"], {}, "--cache.ttl", id="bad-flag"),
    pytest.param(["--web.listen-adress", ":1"], {}, "--web.listen-adress", id="unknown-flag"),
    pytest.param([], {"SCENARIO_EXPORTER_PERIOD": "fortnight"}, "SCENARIO_EXPORTER_PERIOD",
                 id="bad-env"),
    pytest.param([], {"SCENARIO_API_KEY": ""}, "SCENARIO_API_KEY", id="secret-without-key"),
]


@pytest.mark.parametrize("args, env, named", FAILED_STARTS)
def test_failed_start_with_the_secret_in_the_environment(processes: Processes,
                                                         args: list[str], env: dict[str, str],
                                                         named: str) -> None:
    proc = processes.start(*args, "--log.level", "debug",
                           env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": SECRET,
                                "SCENARIO_SDK_API_SECRET": SECRET, **env})
    assert proc.wait() == 2
    output = everything_written(proc)
    assert named in output
    assert_no_secret(output, f"the failed start {proc.args}")


def test_failed_start_port_taken(processes: Processes, fake: FakeUpstream) -> None:
    with _busy_port() as busy:
        port = busy.getsockname()[1]
        proc = processes.start("--web.listen-address", f"127.0.0.1:{port}", "--scenario.api-url",
                               fake.url, "--log.level", "debug",
                               env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": SECRET})
        assert proc.wait() == 1
    output = everything_written(proc)
    assert "--web.listen-address" in output
    assert_no_secret(output, "the failed start on a taken port")


@pytest.mark.parametrize("problem", ["missing", "directory", "empty"])
def test_unreadable_secret_file(processes: Processes, tmp_path: Path, problem: str) -> None:
    path = tmp_path / "secret"
    if problem == "directory":
        path.mkdir()
        (path / "inside").write_text(SECRET)
    elif problem == "empty":
        path.write_text("\n")
    proc = processes.start("--log.level", "debug",
                           env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET_FILE": str(path),
                                "SCENARIO_SDK_API_SECRET": SECRET})
    assert proc.wait() == 2
    output = everything_written(proc)
    assert "SCENARIO_API_SECRET_FILE" in output and str(path) in output
    assert_no_secret(output, f"the failed start with a {problem} secret file")


BAD_ACCOUNTS = [
    # YAML text of a config file with the secret in it, a word the message must contain
    pytest.param(f"accounts:\n  - name: bad name!\n    api_key: {API_KEY}\n"
                 f"    api_secret: {SECRET}\n", "name", id="bad-name"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n"
                 f"    api_secret_file: /nonexistent/secret\n    api_secret: {SECRET}\n",
                 "api_secret", id="two-secret-sources"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: ''\n    api_secret: {SECRET}\n",
                 "api_key", id="empty-key"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n"
                 f"    api_secret: [{SECRET}]\n", "api_secret", id="secret-not-a-string"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n    api_secret: {SECRET}\n"
                 f"    secret_note: {SECRET}\n", "secret_note", id="unknown-field"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n"
                 f"    api_secret: {SECRET}\n    budget_creative_units: -{SECRET}\n",
                 "budget_creative_units", id="bad-budget"),
    pytest.param(f"api_secret: {SECRET}\n", "api_secret", id="secret-at-top-level"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n"
                 f"    api_secret: {SECRET}: oops\n", "line", id="malformed-yaml"),
    pytest.param(f"accounts:\n  - name: a\n    api_key: {API_KEY}\n    api_secret: {SECRET}\n"
                 f"cache:\n  ttl: soon\n", "cache.ttl", id="bad-setting-beside-it"),
]


@pytest.mark.parametrize("document, named", BAD_ACCOUNTS)
def test_bad_yaml_account_with_its_secret(processes: Processes, tmp_path: Path,
                                          document: str, named: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(document)
    for command in ([], ["check"]):
        proc = processes.start(*command, "--config.file", str(path), "--log.level", "debug")
        assert proc.wait() == 2, proc.stderr_lines
        output = everything_written(proc)
        assert len(proc.stderr_lines) == 1 and named in output, output
        assert_no_secret(output, f"the failed start with {path}:\n{document}")


# -- check ---------------------------------------------------------------------------------


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
@pytest.mark.parametrize("mode, code", [("ok", 0), ("401", 1), ("500", 1), ("garbage", 1)])
def test_check_output(processes: Processes, fake: FakeUpstream, mode: str, code: int,
                      log_format: str) -> None:
    fake.set_mode(mode)
    proc = processes.start("check", "--scenario.api-url", fake.url, "--log.level", "debug",
                           "--log.format", log_format,
                           env={"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": SECRET})
    assert proc.wait() == code
    output = everything_written(proc)
    assert ("OK:" in output) == (mode == "ok") and ("FAILED" in output) == (mode != "ok")
    assert {r.authorization for r in fake.state.requests} == {f"Basic {BASIC}"}
    assert_no_secret(output, f"check against a fake in mode {mode}")


def test_check_several_accounts_one_failing(processes: Processes, fake: FakeUpstream,
                                            tmp_path: Path) -> None:
    wrong = "wr0ng-" + SECRET[::-1]
    path = tmp_path / "config.yaml"
    path.write_text(f"accounts:\n"
                    f"  - {{name: good, api_key: {API_KEY}, api_secret: {SECRET}}}\n"
                    f"  - {{name: bad, api_key: {API_KEY}, api_secret: {wrong}}}\n")
    proc = processes.start("check", "--config.file", str(path), "--scenario.api-url", fake.url,
                           "--log.level", "debug")
    assert proc.wait() == 1
    output = everything_written(proc)
    assert "account good" in output and "account bad" in output and "auth" in output
    assert_no_secret(output, "check with two accounts")
    assert wrong not in output and wrong[::-1] not in output
    assert basic_authorization(API_KEY, wrong).removeprefix("Basic ") not in output


# -- config objects ------------------------------------------------------------------------


def test_config_objects_mask_the_secret(tmp_path: Path) -> None:
    account = AccountConfig(name="a", api_key=API_KEY, api_secret=SecretStr(SECRET))
    plain = AccountConfig(name="b", api_key=API_KEY, api_secret=SECRET)  # type: ignore[arg-type]
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    from_file = AccountConfig(name="c", api_key=API_KEY, api_secret_file=secret_file)
    settings = Settings(accounts=(account, plain, from_file))
    from_env = build_settings({}, {"SCENARIO_API_KEY": API_KEY, "SCENARIO_API_SECRET": SECRET})

    for obj in (account, plain, from_file, settings, from_env, *from_env.accounts):
        for text in (repr(obj), str(obj), f"{obj}", f"{obj!r}", obj.model_dump_json(),
                     str(obj.model_dump()), repr(obj.model_dump())):
            assert_no_secret(text, f"a rendering of {type(obj).__name__}")
    # ... while the secret is there for the client to use.
    assert {a.secret() for a in settings.accounts} == {SECRET}
    assert from_env.accounts[0].secret() == SECRET


@pytest.mark.parametrize("fields", [
    {"name": "bad name", "api_key": API_KEY, "api_secret": SECRET},
    {"name": "a", "api_key": API_KEY, "api_secret_file": "/x", "api_secret": SECRET},
    {"name": "a", "api_key": API_KEY, "api_secret": [SECRET]},
    {"name": "a", "api_key": API_KEY, "api_secret": SECRET, "note": SECRET},
])
def test_validation_errors_do_not_carry_the_secret(fields: Mapping[str, object]) -> None:
    with pytest.raises(ValidationError) as caught:
        AccountConfig(**fields)  # type: ignore[arg-type]
    assert_no_secret(str(caught.value), "a ValidationError of AccountConfig")
    assert_no_secret(repr(caught.value), "a ValidationError of AccountConfig")

