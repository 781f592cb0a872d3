"""A year of history for two accounts: ``python -m bench.history [--periods N]``.

What the backfill costs, end to end, against the loopback fake (the demo account:
36 models, 24 users, for both accounts):

* pushed by remote write into each server this machine has: Debian's Prometheus 2
  and Prometheus 3 (``--web.enable-remote-write-receiver``, a 400-day out-of-order
  window) and VictoriaMetrics (single node);
* written as OpenMetrics, then turned into blocks by that Prometheus' ``promtool``.

For each: upstream requests, wall time and peak RSS of the ``scenario-exporter
backfill`` process, samples and requests pushed, the push rate (samples per second
of pushing, from the run's summary: encoding and sending, retries included), and for
the promtool path the time of ``promtool tsdb create-blocks-from openmetrics``.
Figures only: the issue sets no goal (the closing note quotes them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from exporter.upstream.demo import DemoAccount
from testkit.fake_upstream import FakeUpstream
from testkit.processes import Processes, clean_environment
from testkit.prometheus import find_build, prometheus_config, start_prometheus
from testkit.repo import REPO_ROOT
from testkit.victoria import BINARY as VICTORIA_METRICS
from testkit.victoria import start_victoria_metrics

ACCOUNTS = ("studio", "mobile")
OUT_OF_ORDER = {"storage": {"tsdb": {"out_of_order_time_window": "400d"}}}
KEEP = "--storage.tsdb.retention.time=400d"
# A year's push takes seconds here; past this the run is killed and its log shown (the
# quick run's bound is below that of the test that runs it).
BACKFILL_TIMEOUT = 900.0
QUICK_BACKFILL_TIMEOUT = 120.0


def progress(message: str) -> None:
    """Where the run is, on stderr (what a timed-out run leaves to read)."""
    print(f"{time.strftime('%H:%M:%S')} {message}", file=sys.stderr, flush=True)


@dataclass
class Run:
    """One ``scenario-exporter backfill``: its summary line, wall time and peak RSS."""

    summary: dict[str, Any]
    seconds: float
    peak_rss_mib: float


def backfill(config: Path, *flags: str, timeout: float = BACKFILL_TIMEOUT) -> Run:
    """The real command, in a process of its own (its own peak RSS), killed after
    *timeout* seconds."""
    argv = [sys.executable, "-m", "exporter", "backfill", f"--config.file={config}",
            "--log.format=json", "--label=job=scenario-exporter", *flags]
    started = time.monotonic()
    child = subprocess.Popen(argv, env=clean_environment(), cwd=REPO_ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert child.stderr is not None
    stream, err = child.stderr, []
    reader = threading.Thread(target=lambda: err.append(stream.read()))
    reader.start()
    # wait4, not wait: the child's own resource usage (Prometheus is a child too).
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > timeout:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            break
        time.sleep(0.05)
    seconds = time.monotonic() - started
    reader.join()
    child.returncode = os.waitstatus_to_exitcode(status)
    text = "".join(err)
    if child.returncode != 0:
        raise SystemExit(f"backfill failed ({child.returncode}) after {seconds:.0f} s: "
                         f"{text[-3000:]}")
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    summary = next(line for line in reversed(lines) if line.get("msg") == "backfill complete")
    return Run(summary, seconds, usage.ru_maxrss / 1024)


def _row(name: str, run: Run, extra: str = "") -> str:
    s = run.summary
    pushed = s.get("remote_write_samples")
    rate = f"{pushed / s['remote_write_seconds']:,.0f}" if pushed else "-"
    samples = pushed if pushed else s.get("samples", 0)
    return (f"| {name} | {s['requests']} | {run.seconds:.1f} | {run.peak_rss_mib:.0f} | "
            f"{samples:,} | {s.get('remote_write_requests', '-')} | {rate} | {extra} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--periods", type=int, default=12)
    parser.add_argument("--models", type=int, default=36)
    parser.add_argument("--users", type=int, default=24)
    parser.add_argument("--quick", action="store_true",
                        help="2 periods of 4 models: that it runs (CI), not its figures")
    args = parser.parse_args(argv)
    if args.quick:
        args.periods, args.models, args.users = 2, 4, 2
    periods = f"--periods={args.periods}"
    bound = QUICK_BACKFILL_TIMEOUT if args.quick else BACKFILL_TIMEOUT
    rows = []
    # The servers stop before their data directories are removed (one still writing
    # into its directory made the removal fail).
    with tempfile.TemporaryDirectory() as scratch, \
            FakeUpstream(DemoAccount(models=args.models, users=args.users)) as fake, \
            Processes() as processes:
        tmp = Path(scratch)
        config = tmp / "accounts.yml"
        config.write_text(yaml.safe_dump({
            "scenario": {"api-url": fake.url}, "period": "month",
            "accounts": [{"name": name, "api_key": "test-key",
                          "api_secret": "test-secret-value"} for name in ACCOUNTS]}),
            encoding="utf-8")
        builds = [b for b in (find_build(2), find_build(3)) if b is not None]
        for build in builds:
            progress(f"starting {build}")
            server = start_prometheus(build, processes, "history",
                                      {**prometheus_config([], []), **OUT_OF_ORDER},
                                      tmp / f"data-{build}", "--web.enable-remote-write-receiver",
                                      KEEP)
            progress(f"pushing into {build} at {server.url}")
            rows.append(_row(str(build), backfill(
                config, periods, f"--remote-write.url={server.url}/api/v1/write",
                timeout=bound)))
            progress(f"stopping {build}")
            server.process.stop()
        if shutil.which(VICTORIA_METRICS):
            progress("starting victoria-metrics")
            vm = start_victoria_metrics(processes, tmp / "vm-data")
            rows.append(_row("victoria-metrics", backfill(
                config, periods, f"--remote-write.url={vm.write_url}", timeout=bound)))
        for build in builds[:1]:
            output = tmp / "history.om"
            progress(f"writing {output.name}, then promtool of {build}")
            run = backfill(config, periods, f"--output={output}", timeout=bound)
            started = time.monotonic()
            subprocess.run([build.promtool, "tsdb", "create-blocks-from", "openmetrics",
                            str(output), str(tmp / "blocks")], check=True,
                           capture_output=True, timeout=3600)
            blocks = time.monotonic() - started
            rows.append(_row(f"promtool ({build})", run,
                             f"file {output.stat().st_size / 1e6:.0f} MB, "
                             f"create-blocks-from {blocks:.1f} s"))
    print(f"\nbackfill of {args.periods} periods x {len(ACCOUNTS)} accounts "
          f"({args.models} models, {args.users} users each), loopback fake\n")
    print("| destination | upstream requests | wall s | peak RSS MiB | samples | pushes "
          "| pushed samples/s | |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in rows:
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
