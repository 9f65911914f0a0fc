"""The benchmarks at smoke size, as a subprocess: they run, print every figure, and leave
bench/RESULTS.md alone. Figures are only printed, never compared with a target here."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.postgres import URL_ENV, PostgresServer

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "RESULTS.md"

# Each benchmark's figures, as printed on stdout and written into the report.
FIGURES = {
    "admission": [
        "admit() with 1,000 rows",
        "admit() / bare with 1,000 rows",
        "database-thread round trips per admission",
        "Query plans of what admit() runs",
        "SCANs (whole table or index) in those plans",
    ],
    "webhooks": [
        "verified deliveries/s, WebhookReceiver + Pipeline.report",
        "receiver + Pipeline.report / bare",
        "verified deliveries/s, WebhookReceiver + no-op report",
        "SQL statements / database-thread round trips per delivery",
        "receiver answers",
    ],
    "memory": [
        "bot RSS with 500 jobs in flight",
        "growth per in-flight job",
        "jobs still processing after the bot stopped",
    ],
}


@pytest.mark.timeout(150)
def test_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    before = RESULTS.read_bytes() if RESULTS.exists() else None
    report = tmp_path / "report.md"
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--out", str(report), *FIGURES],
        cwd=ROOT, capture_output=True, text=True, timeout=140,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    written = report.read_text()
    for name, labels in FIGURES.items():
        for label in labels:
            assert f"[{name}] {label}" in run.stdout, f"{name}: {label!r} not printed\n{run.stdout[-3000:]}"
            assert label in written, f"{name}: {label!r} not in the report"
        assert f"[{name}] target " in run.stdout  # met or missed, said in words
    assert "CRASHED" not in run.stdout
    assert (RESULTS.read_bytes() if RESULTS.exists() else None) == before  # smoke never overwrites it


@pytest.mark.timeout(150)
def test_postgres_admission_smoke_prints_its_figures(postgres_server: PostgresServer) -> None:
    # The benchmark uses this session's server (TEST_POSTGRES_URL), so it runs wherever the
    # PostgreSQL tests run and skips (or, with REQUIRE_POSTGRES=1, fails) where they do.
    env = {**os.environ, URL_ENV: postgres_server.admin_url}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "admission_pg"],
        cwd=ROOT, capture_output=True, text=True, timeout=140, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for label in ("admit() on PostgreSQL, one store (one connection)", "admit() / bare on PostgreSQL"):
        assert f"[admission_pg] {label}" in run.stdout, run.stdout[-3000:]
    assert "[admission_pg] target " in run.stdout


@pytest.mark.timeout(200)
def test_ack_scale_smoke_prints_its_figures(postgres_server: PostgresServer) -> None:
    # One process on four shards beside two on two each, on this session's PostgreSQL server.
    env = {**os.environ, URL_ENV: postgres_server.admin_url}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "ack_scale"],
        cwd=ROOT, capture_output=True, text=True, timeout=190, env=env,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    for label in (
        "ack latency, 20 simultaneous over 4 shards, one (p50 / p99",
        "ack latency, 20 simultaneous over 4 shards, two (p50 / p99",
        "p99 two / p99 one",
        "two: p50 / p99 by process",
        "CPU per burst while its acks were out, two",
        "shortest ack window the CPU allows",
    ):
        assert f"[ack_scale] {label}" in run.stdout, run.stdout[-3000:]
    assert "[ack_scale] target " in run.stdout and "CRASHED" not in run.stdout
