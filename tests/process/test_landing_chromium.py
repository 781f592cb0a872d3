"""The landing page of ``python -m exporter --demo``, as a newcomer first sees it: its
HTML holds the demo team's bill, and headless Chromium (Debian's ``chromium``) renders
it to a screenshot of the asked size that is not blank."""

from __future__ import annotations

import re
import struct
import subprocess
import zlib
from datetime import datetime, timezone
from pathlib import Path

from exporter.upstream.demo import DemoAccount
from exporter.upstream.demo_team import allowance, billing_period
from testkit.processes import Processes, clean_environment, free_port
from testkit.tools import require_tool

WIDTH, HEIGHT = 1280, 900
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk, the first after the signature."""
    assert data[:8] == PNG_SIGNATURE, "not a PNG"
    assert data[12:16] == b"IHDR", "no IHDR chunk first"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def png_pixels(data: bytes) -> bytes:
    """The decompressed image data (the IDAT chunks; each row starts with its filter byte)."""
    position, parts = 8, []
    while position < len(data):
        (length,), kind = struct.unpack(">I", data[position:position + 4]), \
            data[position + 4:position + 8]
        if kind == b"IDAT":
            parts.append(data[position + 8:position + 8 + length])
        position += 12 + length
    return zlib.decompress(b"".join(parts))


def bill_cells(page: str, account: str) -> list[str]:
    match = re.search(rf'<tr><th scope="row">{account}</th>(.*?)</tr>', page)
    assert match, f"no bill row for {account}:\n{page}"
    return re.findall(r"<td[^>]*>(.*?)</td>", match.group(1))


def test_the_demo_landing_page_shows_the_bill_in_headless_chromium(
        processes: Processes, tmp_path: Path) -> None:
    chromium = require_tool("chromium")
    port = free_port()
    proc = processes.start("--demo", "--web.listen-address", f"127.0.0.1:{port}", port=port)
    proc.wait_ready()

    def with_bill() -> str | None:  # the first team refresh comes right after start-up
        text = proc.get("/").text
        return text if " CU (" in text else None

    page = proc.wait_until(with_bill, 15, "the bill on the landing page")
    metrics = proc.metrics()
    start, end = billing_period(datetime.now(timezone.utc))
    used = metrics.value("scenario_plan_used_creative_units", account="demo")
    assert used is not None
    period, spent, ahead, prepaid, expiry, read = bill_cells(page, "demo")
    assert period.startswith(f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} (")
    assert spent == f"{used:,.1f}".removesuffix(".0") + \
        f" of {allowance(DemoAccount()):,.0f} CU ({used / allowance(DemoAccount()):.1%})"
    assert re.fullmatch(r"[\d,]+ CU \(\d+% of the allowance[^)]*\)", ahead), ahead
    assert prepaid == "22,000 CU"
    assert re.fullmatch(r"\d{4}-\d\d-\d\d 09:00 UTC: 4,000 CU \(in [45]\.\d days\)", expiry)
    assert read.endswith("s ago)")
    assert "at the pace so far" in page

    shot = tmp_path / "landing.png"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
         f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={tmp_path / 'profile'}",
         "--no-first-run", proc.url + "/"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env=clean_environment({"HOME": str(tmp_path)}))
    assert done.returncode == 0, done.stderr[-3000:]
    data = shot.read_bytes()
    assert png_size(data) == (WIDTH, HEIGHT)
    assert len(data) > 20_000, f"a {len(data)} B screenshot is too small to hold the page"
    # A blank page is one colour: the rendered text brings many distinct byte values.
    assert len(set(png_pixels(data))) > 16
