"""The load generator of the webhook benchmarks: signed completion events posted over loopback.

It runs as its own process (``python -m bench.poster URL ...``) so that the server under
test has this process's event loop to itself; :func:`post` starts it and reads its answer.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import sys
import time
from typing import Any

import aiohttp

from bench.common import ROOT
from shared import contract


def event_body(api_id: str) -> bytes:
    """What the API posts when job ``api_id`` completes (compact JSON, as the emulator sends it)."""
    return json.dumps(
        {
            "id": api_id,
            "status": contract.STATUS_COMPLETED,
            "url": f"http://127.0.0.1:9/outputs/{api_id}.mp4",
            "service": contract.SERVICE,
            "createdAt": "2025-01-01T00:00:00.000Z",
            "completedAt": "2025-01-01T00:01:00.000Z",
            "metadata": {"duration": 5, "width": 1280, "height": 720},
        },
        separators=(",", ":"),
    ).encode()


def signature(secret: bytes, body: bytes) -> str:
    return contract.SIGNATURE_PREFIX + hmac.new(secret, body, hashlib.sha256).hexdigest()


def api_id(prefix: str, i: int) -> str:
    return f"{prefix}{i:08d}"


async def _post_all(
    url: str, secret: bytes, prefix: str, first: int, warmup: int, count: int, concurrency: int,
    repeat: int = 1,
) -> dict[str, Any]:  # fmt: skip
    requests = [
        (body, {contract.SIGNATURE_HEADER: signature(secret, body), "Content-Type": "application/json"})
        for body in (event_body(api_id(prefix, i)) for i in range(first, first + warmup + count))
    ]
    # A retry storm: the timed events are sent ``repeat`` times over, the whole run again each
    # time, as an API resending every webhook whose answer it missed.
    requests = requests[:warmup] + requests[warmup:] * repeat
    statuses: dict[int, int] = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as session:

        async def send(batch: list[tuple[bytes, dict[str, str]]]) -> None:
            next_index = 0

            async def sender() -> None:
                nonlocal next_index
                while next_index < len(batch):
                    body, headers = batch[next_index]
                    next_index += 1
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        statuses[response.status] = statuses.get(response.status, 0) + 1

            await asyncio.gather(*(sender() for _ in range(concurrency)))

        await send(requests[:warmup])  # connections opened, code paths warm
        began, began_wall = time.perf_counter(), time.time()
        await send(requests[warmup:])
        seconds, ended_wall = time.perf_counter() - began, time.time()
    # Wall-clock ends too: a relay's subscriber is timed in another process.
    return {
        "count": count * repeat,
        "seconds": seconds,
        "began": began_wall,
        "ended": ended_wall,
        "statuses": statuses,
    }


async def post(
    url: str, secret: bytes, prefix: str, *, first: int, warmup: int, count: int, concurrency: int,
    repeat: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Post ``warmup`` then ``count`` timed events (each ``repeat`` times) for jobs ``prefix +
    first...`` from a process of their own; its answer: count (posts timed), seconds,
    began/ended (wall clock) and the status counts."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.poster", url, "--secret", secret.decode(), "--prefix", prefix,
        "--first", str(first), "--warmup", str(warmup), "--count", str(count),
        "--concurrency", str(concurrency), "--repeat", str(repeat), cwd=ROOT, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"the poster failed ({proc.returncode})")
    answer: dict[str, Any] = json.loads(out)
    return answer


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.poster")
    p.add_argument("url")
    p.add_argument("--secret", required=True)  # a benchmark's own throwaway secret
    p.add_argument("--prefix", required=True)
    p.add_argument("--first", type=int, default=0)
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--repeat", type=int, default=1)
    a = p.parse_args(argv)
    answer = asyncio.run(
        _post_all(a.url, a.secret.encode(), a.prefix, a.first, a.warmup, a.count, a.concurrency, a.repeat)
    )
    print(json.dumps(answer))


if __name__ == "__main__":
    main(sys.argv[1:])
