"""The emulator's command line: option parsing, keys files, and a real process."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from emulator.cli import config_from_args, configure_parser, main
from shared import contract


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    configure_parser(parser)
    return parser.parse_args(argv)


def test_defaults_and_overrides() -> None:
    cfg = config_from_args(parse("--api-key", "k", "--plan", "enterprise", "--rpm", "1000", "--daily", "5"))
    assert (cfg.host, cfg.port, cfg.time_scale, cfg.fps, cfg.video_height, cfg.crf) == (
        "127.0.0.1", 8787, 1.0, 24, 480, 23
    )  # fmt: skip
    assert (cfg.queue_seconds, cfg.processing_seconds, cfg.render_workers, cfg.webhook_attempts) == (
        2,
        15,
        2,
        6,
    )
    (acct,) = cfg.accounts
    assert acct.plan == "enterprise" and acct.credits == 100_000 and acct.label == "main"
    limits = acct.limits
    assert limits.requests_per_minute == 1000 and limits.jobs_per_day == 5
    assert limits.concurrent_jobs == contract.PLANS["enterprise"].concurrent_jobs


def test_keys_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(
        json.dumps(
            [
                {"key": "a", "plan": "free", "label": "alice", "credits": 10},
                {"key": "b", "plan": "starter", "webhook_secret": "own", "concurrent_jobs": 7},
            ]
        )
    )
    cfg = config_from_args(
        parse("--keys-file", str(keys), "--webhook-secret", "shared", "--concurrency", "2")
    )
    a, b = cfg.accounts
    assert (a.label, a.plan, a.credits, a.webhook_secret, a.limits.concurrent_jobs) == (
        "alice",
        "free",
        10,
        "shared",
        2,
    )
    assert (b.webhook_secret, b.limits.concurrent_jobs) == ("own", 7)
    assert cfg.labels() == ["alice", "account-2"]


@pytest.mark.parametrize(
    "argv",
    [
        (),  # no key at all
        ("--api-key", "k", "--fps", "0"),
        ("--keys-file", "/nonexistent/keys.json"),
    ],
)
def test_bad_options_exit_2(argv: tuple[str, ...], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(parse(*argv)) == 2
    assert "emulator:" in capsys.readouterr().err


def test_bad_keys_file_entry(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"key": "a", "plan": "gold", "colour": "red"}]))
    with pytest.raises(ValueError, match="colour"):
        config_from_args(parse("--keys-file", str(keys)))


async def test_process_prints_banner_serves_and_stops_on_sigint() -> None:
    env = dict(os.environ, NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "emulator", "--port", "0", "--api-key", "cli-secret-key-123",
        "--webhook-secret", "cli-webhook-secret-456", "--time-scale", "0.01",
        "--video-height", "96", "--fps", "8",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env,
        cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    banner = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    assert "stand-in" in banner and "not a model" in banner
    url = banner.rsplit(" ", 1)[1].strip()
    assert url.startswith("http://127.0.0.1:")
    async with httpx.AsyncClient(base_url=url) as http:
        assert (await http.get("/healthz")).status_code == 200
        ping = await http.post(
            "/graphql", json={"query": contract.PING_QUERY}, headers={"X-API-Key": "cli-secret-key-123"}
        )
        assert ping.status_code == 200
    proc.send_signal(signal.SIGINT)
    rest_out, err = await asyncio.wait_for(proc.communicate(), 15)
    assert proc.returncode == 0
    output = banner + rest_out.decode() + err.decode()
    assert "cli-secret-key-123" not in output and "cli-webhook-secret-456" not in output
