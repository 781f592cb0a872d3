"""The gzip stream closed by hand: valid for every reader, whatever the tail's size."""

from __future__ import annotations

import gzip
import os
import subprocess
import zlib

import pytest

from exporter.exposition import finish_gzip


def open_stream(body: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    return compressor.compress(body) + compressor.flush(zlib.Z_SYNC_FLUSH)


@pytest.mark.parametrize("body_size", [0, 1, 70_000])
@pytest.mark.parametrize("tail_size", [0, 1, 1000, 65_535, 65_536, 200_001])
def test_stream_decompresses_to_body_and_tail(body_size: int, tail_size: int) -> None:
    body = (b"metric_a{x=\"1\"} 1.0\n" * 5000)[:body_size]
    tail = os.urandom(tail_size)
    stream = finish_gzip(open_stream(body), zlib.crc32(body), len(body), tail)
    assert gzip.decompress(stream) == body + tail  # checks CRC and length too
    inflater = zlib.decompressobj(wbits=31)
    assert inflater.decompress(stream) + inflater.flush() == body + tail
    assert inflater.eof and inflater.unused_data == b""


def test_gzip_command_accepts_it() -> None:
    body, tail = b"# HELP a b\n" * 100, b"scenario_exporter_scrape_duration_seconds 0.001\n"
    stream = finish_gzip(open_stream(body), zlib.crc32(body), len(body), tail)
    result = subprocess.run(["gzip", "-t"], input=stream, capture_output=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert subprocess.run(["gzip", "-dc"], input=stream, capture_output=True,
                          timeout=30).stdout == body + tail


def test_a_wrong_crc_is_detected() -> None:
    body = b"x" * 100
    stream = finish_gzip(open_stream(body), zlib.crc32(body) ^ 1, len(body), b"tail")
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(stream)
