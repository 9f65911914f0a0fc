"""The vendor page's own samples, verbatim but for the host and the key, against the emulator."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from emulator.server import Emulator

from .conftest import KEY

SAMPLES = Path(__file__).resolve().parents[1] / "data" / "vendor_samples"
VENDOR_HOST = "https://api.doitong.com"


def adapted(name: str, emu: Emulator) -> str:
    text = (SAMPLES / name).read_text(encoding="utf-8")
    assert VENDOR_HOST in text and "YOUR_API_KEY" in text
    return text.replace(VENDOR_HOST, emu.base_url).replace("YOUR_API_KEY", KEY)


def loopback_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(var, None)
    env["NO_PROXY"] = env["no_proxy"] = "127.0.0.1,localhost"
    return env


async def run(*argv: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=loopback_env()
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_python_sample(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "sample.py"
    script.write_text(adapted("sample_python.py", emu), encoding="utf-8")
    code, out, err = await run(sys.executable, str(script))
    assert code == 0, err
    assert out.startswith("Result: ")
    job = ast.literal_eval(out.removeprefix("Result: ").strip())
    assert job["id"] and job["status"] == "queued" and job["provider"] == "runway-i2v"
    assert job["creditCost"] == 50
    assert emu.stats()["accounts"]["main"]["jobs_created"] == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
async def test_curl_sample(emu: Emulator, tmp_path: Path) -> None:
    script = tmp_path / "sample.sh"
    script.write_text(adapted("sample_curl.sh", emu), encoding="utf-8")
    code, out, err = await run("bash", str(script))
    assert code == 0, err
    body = json.loads(out)
    job = body["data"]["generate"]
    assert job["id"] and job["type"] == "VIDEO"
    # the sample sends a fixed Idempotency-Key: running it again replays the same job
    code, out, _ = await run("bash", str(script))
    assert json.loads(out)["data"]["generate"]["id"] == job["id"]
    state = emu.stats()["accounts"]["main"]
    assert state["jobs_created"] == 1 and state["idempotent_replays"] == 1
