"""Remote write: what each request carries (snappy protobuf, headers, credentials),
how samples are cut into requests, which failures are retried, and errors that name
their flag or the server's message without a secret."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cramjam
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exporter.backfill.remote_write import (
    MAX_ATTEMPTS,
    RemoteWriteError,
    RemoteWriteOptions,
    RemoteWriter,
    WriteRequest,
    retry_delay,
)
from exporter.core.errors import ConfigError
from testkit.doubles import MaxRandom
from testkit.pki import certificate_authority
from testkit.web import basic_authorization

URL = "https://push.example/api/v1/write"
T0 = 1_790_000_000.0  # unix seconds
Handler = Callable[[httpx.Request], httpx.Response]
Decoded = list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]


def decode(request: httpx.Request) -> Decoded:
    """The series of a request: labels as sent, samples as (ms, value)."""
    message = WriteRequest.FromString(bytes(cramjam.snappy.decompress_raw(request.content)))
    return [([(label.name, label.value) for label in series.labels],
             [(sample.timestamp, sample.value) for sample in series.samples])
            for series in message.timeseries]


class Endpoint:
    """A fake receiver: answers from *replies* in turn (the last one repeats)."""

    def __init__(self, *replies: httpx.Response | Exception | Handler) -> None:
        self.replies = list(replies) or [httpx.Response(204)]
        self.seen: list[httpx.Request] = []
        self.sleeps: list[float] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        reply = self.replies[min(len(self.seen), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply if isinstance(reply, httpx.Response) else reply(request)

    def writer(self, options: RemoteWriteOptions | None = None, **fields: Any) -> RemoteWriter:
        return RemoteWriter(options or RemoteWriteOptions(**{"url": URL, **fields}),
                            transport=httpx.MockTransport(self.handle),
                            sleep=self.sleeps.append, rng=MaxRandom())


def options(tmp_path: Path, **flags: Any) -> RemoteWriteOptions:
    """Options from flags by dest, files given by content written under *tmp_path*."""
    values: dict[str, Any] = {"remote_write.url": URL}
    for dest, value in flags.items():
        if dest.endswith("_file") and value is not None:
            path = tmp_path / dest
            path.write_text(value)
            value = str(path)
        values["remote_write." + dest.replace("__", ".")] = value
    parsed = RemoteWriteOptions.from_arguments(values)
    assert parsed is not None
    return parsed


def test_a_request_is_a_snappy_write_request_with_the_protocol_headers() -> None:
    endpoint = Endpoint()
    writer = endpoint.writer()
    writer.push([({"job": "x", "__name__": "scenario_cu_total", "account": "acme"},
                  [(T0 + 0.0006, 1.0), (T0 + 60.5, 2.5)])])
    (request,) = endpoint.seen
    assert request.method == "POST" and str(request.url) == URL
    assert decode(request) == [([("__name__", "scenario_cu_total"), ("account", "acme"),
                                 ("job", "x")],
                                [(1_790_000_000_001, 1.0), (1_790_000_060_500, 2.5)])]
    assert request.headers["Content-Encoding"] == "snappy"
    assert request.headers["Content-Type"] == "application/x-protobuf"
    assert request.headers["X-Prometheus-Remote-Write-Version"] == "0.1.0"
    assert request.headers["User-Agent"].startswith("scenario-exporter/")
    assert "Authorization" not in request.headers
    assert writer.stats.requests == 1 and writer.stats.series == 1
    assert writer.stats.samples == 2 and writer.stats.bytes == len(request.content)


def test_the_body_is_the_remote_write_schema_on_the_wire() -> None:
    """Checked against bytes written by hand from prompb's field numbers and types,
    not against the module's own message classes."""
    endpoint = Endpoint()
    endpoint.writer().push([({"__name__": "up"}, [(1.0, 1.0)])])
    label = b"\x0a\x08__name__" + b"\x12\x02up"              # Label: name=1, value=2
    sample = b"\x09" + b"\x00" * 6 + b"\xf0\x3f" + b"\x10\xe8\x07"  # value=1 (double), ts=2
    series = b"\x0a" + bytes([len(label)]) + label + b"\x12" + bytes([len(sample)]) + sample
    expected = b"\x0a" + bytes([len(series)]) + series             # WriteRequest.timeseries=1
    assert bytes(cramjam.snappy.decompress_raw(endpoint.seen[0].content)) == expected


def test_a_long_series_goes_on_in_the_next_requests_in_time_order() -> None:
    endpoint = Endpoint()
    writer = endpoint.writer(max_samples_per_request=3)
    long = [(T0 + 60 * i, float(i)) for i in range(7)]
    writer.push([({"__name__": "a"}, long), ({"__name__": "b"}, [(T0, 10.0), (T0 + 60, 11.0)])])
    sent = [decode(request) for request in endpoint.seen]
    ms = [(1000 * int(t), v) for t, v in long]
    b_ms = 1000 * int(T0)
    assert sent == [[([("__name__", "a")], ms[0:3])],
                    [([("__name__", "a")], ms[3:6])],
                    [([("__name__", "a")], ms[6:7]),
                     ([("__name__", "b")], [(b_ms, 10.0), (b_ms + 60000, 11.0)])]]
    assert (writer.stats.requests, writer.stats.series, writer.stats.samples) == (3, 2, 9)
    assert writer.stats.bytes == sum(len(request.content) for request in endpoint.seen)


@settings(max_examples=60, deadline=None)
@given(lengths=st.lists(st.integers(0, 12), max_size=6), limit=st.integers(1, 7))
def test_batches_never_exceed_the_limit_and_keep_every_sample_in_order(
        lengths: list[int], limit: int) -> None:
    endpoint = Endpoint()
    series = [({"__name__": f"m{n}"}, [(T0 + i, float(i)) for i in range(length)])
              for n, length in enumerate(lengths)]
    endpoint.writer(max_samples_per_request=limit).push(series)
    sizes = [sum(len(samples) for _, samples in decode(r)) for r in endpoint.seen]
    assert all(size <= limit for size in sizes)
    assert all(size == limit for size in sizes[:-1]), "only the last request is short"
    received: list[tuple[str, int, float]] = [
        (labels[0][1], ms, value)
        for request in endpoint.seen for labels, samples in decode(request)
        for ms, value in samples]
    assert received == [(labels["__name__"], round(t * 1000), v)
                        for labels, samples in series for t, v in samples]


def test_samples_out_of_order_or_a_series_without_a_name_are_refused() -> None:
    endpoint = Endpoint()
    with pytest.raises(ValueError, match="time order"):
        endpoint.writer().push([({"__name__": "a"}, [(T0 + 1, 1.0), (T0, 2.0)])])
    with pytest.raises(ValueError, match="__name__"):
        endpoint.writer().push([({"job": "a"}, [(T0, 1.0)])])
    assert not endpoint.seen


def test_flags_give_headers_and_a_bearer_token(tmp_path: Path) -> None:
    endpoint = Endpoint()
    parsed = options(tmp_path, bearer_token_file="  tok-1234567\n",
                     header=["X-Scope-OrgID: tenant-1", "X-Extra=a=b:c"])
    assert parsed.headers == (("X-Scope-OrgID", "tenant-1"), ("X-Extra", "a=b:c"))
    endpoint.writer(parsed).push([({"__name__": "up"}, [(T0, 1.0)])])
    (request,) = endpoint.seen
    assert request.headers["X-Scope-OrgID"] == "tenant-1"
    assert request.headers["X-Extra"] == "a=b:c"
    assert request.headers["Authorization"] == "Bearer tok-1234567"


def test_flags_give_basic_auth_with_the_password_less_its_newline(tmp_path: Path) -> None:
    endpoint = Endpoint()
    parsed = options(tmp_path, basic_auth__username="12345",
                     basic_auth__password_file=" pass word \n")
    endpoint.writer(parsed).push([({"__name__": "up"}, [(T0, 1.0)])])
    assert endpoint.seen[0].headers["Authorization"] == basic_authorization("12345",
                                                                            " pass word ")


def test_no_url_no_remote_write_and_a_ca_file_is_accepted(tmp_path: Path) -> None:
    assert RemoteWriteOptions.from_arguments({"remote_write.url": None}) is None
    assert RemoteWriteOptions.from_arguments({}) is None
    ca, _ = certificate_authority("push CA")
    parsed = options(tmp_path, ca_file=ca.cert.decode())
    assert parsed.ca_file == str(tmp_path / "ca_file")
    Endpoint().writer(parsed).close()  # loads it


@pytest.mark.parametrize(("reply", "retry_after"), [
    (httpx.Response(500, text="boom"), None),
    (httpx.Response(503, headers={"Retry-After": "7"}), 7.0),
    (httpx.Response(429, headers={"Retry-After": "12"}, text="slow down"), 12.0),
    (httpx.ReadTimeout("slow"), None),
    (httpx.ConnectError("refused"), None),
])
def test_failures_that_may_pass_are_retried_with_back_off(
        reply: httpx.Response | Exception, retry_after: float | None,
        caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(reply, reply, httpx.Response(204))
    writer = endpoint.writer()
    with caplog.at_level(logging.WARNING, "exporter.backfill"):
        writer.push([({"__name__": "up"}, [(T0, 1.0)])])
    assert len(endpoint.seen) == 3
    assert decode(endpoint.seen[0]) == decode(endpoint.seen[2]), "the same body again"
    assert endpoint.sleeps == [max(1.0, retry_after or 0), max(2.0, retry_after or 0)]
    assert (writer.stats.requests, writer.stats.retries, writer.stats.samples) == (1, 2, 1)
    fields = [record.fields for record in caplog.records]  # type: ignore[attr-defined]
    assert [f["attempt"] for f in fields] == [1, 2]
    assert [f["retry_in_seconds"] for f in fields] == endpoint.sleeps
    status = reply.status_code if isinstance(reply, httpx.Response) else None
    assert all(f["status"] == status for f in fields)


def test_a_refusal_is_not_retried_and_shows_the_servers_message() -> None:
    endpoint = Endpoint(httpx.Response(400, text="out of bounds\n"))
    writer = endpoint.writer(url="https://u:pw@push.example/api/v1/write?key=k3y")
    with pytest.raises(RemoteWriteError) as refused:
        writer.push([({"__name__": "up"}, [(T0, 1.0)])])
    assert str(refused.value) == ("remote write to https://push.example/api/v1/write refused: "
                                  "HTTP 400: out of bounds")
    assert len(endpoint.seen) == 1 and not endpoint.sleeps
    assert writer.stats.requests == 0


def test_a_long_server_message_is_one_short_line() -> None:
    endpoint = Endpoint(httpx.Response(400, text="bad sample\n" + "x" * 5000))
    with pytest.raises(RemoteWriteError) as refused:
        endpoint.writer().push([({"__name__": "up"}, [(T0, 1.0)])])
    message = str(refused.value)
    assert "\n" not in message and "HTTP 400: bad sample xxx" in message
    assert len(message) < 400


def test_gives_up_after_the_last_attempt() -> None:
    endpoint = Endpoint(httpx.Response(502, text="bad gateway"))
    with pytest.raises(RemoteWriteError) as failed:
        endpoint.writer().push([({"__name__": "up"}, [(T0, 1.0)])])
    assert len(endpoint.seen) == MAX_ATTEMPTS and len(endpoint.sleeps) == MAX_ATTEMPTS - 1
    assert str(failed.value) == (f"remote write to {URL} failed after {MAX_ATTEMPTS} "
                                 "attempts: HTTP 502: bad gateway")


def test_back_off_doubles_up_to_its_cap_and_retry_after_wins_up_to_its_own() -> None:
    delays = [retry_delay(n, MaxRandom()) for n in range(1, 10)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert retry_delay(1, MaxRandom(), 30.0) == 30.0
    assert retry_delay(1, MaxRandom(), 86400.0) == 600.0


@pytest.mark.parametrize("auth", ["bearer", "basic"])
def test_secrets_are_never_in_errors_or_logs(tmp_path: Path, auth: str,
                                             caplog: pytest.LogCaptureFixture) -> None:
    secret = "Sup3rS3cret-value"
    flags = ({"bearer_token_file": secret + "\n"} if auth == "bearer" else
             {"basic_auth__username": "pusher", "basic_auth__password_file": secret + "\n"})
    parsed = options(tmp_path, **flags)
    encoded = basic_authorization("pusher", secret).split()[1]

    def echo(status: int) -> Handler:  # a server that shows what it was sent
        return lambda request: httpx.Response(
            status, text=f"{request.headers['Authorization']} rejected ({secret})")

    for status in (503, 401):
        endpoint = Endpoint(echo(status))
        with caplog.at_level(logging.WARNING), pytest.raises(RemoteWriteError) as failed:
            endpoint.writer(parsed).push([({"__name__": "up"}, [(T0, 1.0)])])
        assert f"HTTP {status}: " in str(failed.value) and "rejected" in str(failed.value)
        for text in (str(failed.value), caplog.text,
                     *(repr(getattr(r, "fields", None)) for r in caplog.records)):
            assert secret not in text and encoded not in text
    assert len(caplog.records) == MAX_ATTEMPTS - 1, "the 503s were logged"
    assert secret in parsed.secrets()


@pytest.mark.parametrize(("flags", "flag", "fragment"), [
    ({"url": "ftp://x"}, "url", "ftp://x is not an http(s) URL"),
    ({"url": "push.example/write"}, "url", "push.example/write is not an http(s) URL"),
    ({"url": "https://u:hunter22@push.example/"}, "url", "must not hold credentials"),
    ({"bearer_token_file": "/nonexistent/token"}, "bearer-token-file",
     "cannot read /nonexistent/token: No such file or directory"),
    ({"bearer_token_file": "EMPTY"}, "bearer-token-file", "is empty"),
    ({"bearer_token_file": "TOKEN", "basic_auth.username": "u",
      "basic_auth.password_file": "TOKEN"}, "bearer-token-file",
     "cannot be used with --remote-write.basic-auth"),
    ({"basic_auth.password_file": "TOKEN"}, "basic-auth.password-file",
     "needs --remote-write.basic-auth.username"),
    ({"basic_auth.username": "u"}, "basic-auth.username",
     "needs --remote-write.basic-auth.password-file"),
    ({"basic_auth.username": "u", "basic_auth.password_file": "/nonexistent/pw"},
     "basic-auth.password-file", "cannot read /nonexistent/pw"),
    ({"ca_file": "/nonexistent/ca.pem"}, "ca-file", "cannot read /nonexistent/ca.pem"),
    ({"ca_file": "TOKEN"}, "ca-file", "holds no PEM CA certificate"),
    ({"header": ["X-Scope-OrgID tenant-1"]}, "header", "item 1 is not 'Name: value'"),
    ({"header": ["X-Ok: 1", "Bad Name: hunter22"]}, "header", "item 2 is not"),
    ({"header": ["X-Empty:"]}, "header", "item 1 is not"),
    ({"header": ["authorization: Bearer hunter22"]}, "header",
     "Authorization is refused; use --remote-write.bearer-token-file"),
    ({"header": ["Content-Type=text/plain"]}, "header", "Content-Type is set by the exporter"),
    ({"header": ["X-A: 1", "x-a: 2"]}, "header", "x-a is given twice"),
])
def test_bad_flags_name_the_flag_in_one_line(tmp_path: Path, flags: dict[str, Any], flag: str,
                                             fragment: str) -> None:
    (tmp_path / "TOKEN").write_text("hunter22\n")
    (tmp_path / "EMPTY").write_text("\n")
    values: dict[str, Any] = {"remote_write.url": URL}
    for name, value in flags.items():
        if value in ("TOKEN", "EMPTY"):
            value = str(tmp_path / value)
        values["remote_write." + name] = value
    with pytest.raises(ConfigError) as bad:
        RemoteWriteOptions.from_arguments(values)
    message = str(bad.value)
    assert message.startswith(f"--remote-write.{flag}: ") and fragment in message
    assert "\n" not in message and "hunter22" not in message
