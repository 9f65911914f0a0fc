"""The end-to-end benchmarks (ack, budget, relay, delivery, delivery_burst) at smoke size, so they cannot rot.

One subprocess, as the README command runs them: it must exit 0 (no benchmark crashed) and print
each benchmark's figures. The figures themselves are not checked: a missed target is a finding
for the report, never a test failure.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.timeout(240)

LABELS = {
    "ack": [
        "ack latency, 1 simultaneous (p50 / p99",
        "ack latency, 10 simultaneous (p50 / p99",
        "CPU per interaction while 10-bursts were acked",
        "target p99 < 100 ms at 200 (smoke: at 10)",
    ],
    "budget": [
        "webhooks: slot utilization while a backlog exists",
        "polling only: slot utilization while a backlog exists",
        "webhooks: 429s",
        "polling only: status reads per completed job",
        "webhooks: Jain's index, first half of the backlog's completions",
        "webhooks: /animate lost",
        "target utilization >= 95% (webhooks)",
    ],
    "relay": [
        "events/s end to end through the relay",
        "relay answers to the posts",
    ],
    "delivery": [
        "delivery overhead, p50 / p95 / max (5 jobs)",
        "upload as the fake saw it",
        "target p95 < 250 ms (webhooks)",
    ],
}

# What each bound is called beside its figure.
BOUNDS = [
    "minimal bot",
    "all 10 Pro slots busy",
    "posted straight to the in-process WebhookReceiver",
    "bare deliverer",
]


def test_end_to_end_benchmarks_run_at_smoke_size(tmp_path: Path) -> None:
    results = ROOT / "bench" / "RESULTS.md"
    before = results.read_bytes() if results.exists() else None
    report = tmp_path / "smoke.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(report), *LABELS],
        cwd=ROOT, capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    written = report.read_text()
    for name, labels in LABELS.items():
        for label in labels:
            assert f"[{name}] {label}" in done.stdout, f"{name}: {label!r} not printed\n{out[-4000:]}"
            assert label.removeprefix("target ") in written, f"{name}: {label!r} not in the report"
    for bound in BOUNDS:
        assert "(bound: " in done.stdout and bound in done.stdout and bound in written, bound
    assert "CRASHED" not in done.stdout and "CRASHED" not in written
    assert (results.read_bytes() if results.exists() else None) == before  # smoke never overwrites it


def test_delivery_burst_runs_at_smoke_size(tmp_path: Path) -> None:
    # Its own subprocess: two bot starts (1 delivery worker, then 4) on top of the run above.
    report = tmp_path / "burst.md"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(report), "delivery_burst"],
        cwd=ROOT, capture_output=True, text=True, timeout=220, check=False,
    )  # fmt: skip
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-6000:]
    written = report.read_text()
    for label in (
        "loopback: completion -> message received, 4 workers: p50 / p95 / max (5 jobs, 1 bursts of 5)",
        "loopback: the same less the upload as the fake saw it (overhead)",
        "loopback: p95 completion -> message, before / after",
        "loopback: burst drained (first completedAt -> last message), per burst",
        "loopback: CPU while a burst drained, bot / rig",
        "+100.0 ms per Discord request: p95 completion -> message, before / after",
        "completedAt spread within a burst",
        "target loopback: p95 with 4 workers below p95 with 1",
        "target +100.0 ms per Discord request: p95 with 4 workers below p95 with 1",
    ):
        assert f"[delivery_burst] {label}" in done.stdout, f"{label!r} not printed\n{out[-4000:]}"
        assert label.removeprefix("target ") in written, f"{label!r} not in the report"
    assert "with 1 worker (before)" in written and "CRASHED" not in done.stdout
    assert "handler crashed" not in out  # the fake saw every request through (none cut off at the stop)
