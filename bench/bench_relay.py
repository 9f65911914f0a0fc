"""Benchmark 4 (second half), the webhook relay: events per second end to end.

End to end: N signed completion events are posted to the relay's ``POST
/webhooks/doitong/{channel}`` (``python -m relay`` in a subprocess, as an operator runs it:
SQLite with ``synchronous=FULL``, each post answered after its group commit), the relay streams
them as Server-Sent Events to a subscriber, and the subscriber (the bot's own
:class:`bot.inbound.relay_subscriber.RelaySubscriber`, in this process) verifies each signature, parses the
event, hands it to its report callback and acknowledges it (cumulative, batched ``POST
/events/ack``). The clock runs from the poster's first timed post to the moment the subscriber's
acknowledgement of the last event was answered; the figure is N over that time.

The bound is the same N events from the same poster to the bot's in-process webhook receiver
(:class:`bot.inbound.receiver.WebhookReceiver`, in this process), whose report callback is the same
trivial one: the path a bot with a public address uses, with no relay in between.

The report callback only counts (it returns True, "known job"): the bot's completion path (a
SQLite transaction per event, measured by benchmark 4's first half) is left out of both, so the
figure is the relay's and the stream's cost. The poster is a separate process with 32 concurrent
aiohttp senders and keep-alive connections; the relay runs with its per-channel rate limit raised
out of the way (the default, 600 a minute, would refuse a burst of thousands: that limit protects
a live relay and is not what is measured). Three processes (poster, relay, this one) share the
machine's cores end to end, two in the bound.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import poster
from bench.common import Result, pct, rate, say
from bot.api.client import ApiJob
from bot.inbound.receiver import WebhookReceiver
from bot.inbound.relay_subscriber import RelaySubscriber
from shared.webhooks import WEBHOOK_PATH
from testkit.harness import free_port
from testkit.relay import RelayProcess

TITLE = "4. Webhook relay"
ORDER = 4.5  # after the receiver's half of benchmark 4

SECRET = b"bench-relay-webhook-secret"
TOKEN = "bench-relay-subscriber-token-0123"
CHANNEL = "bench"
CONCURRENCY = 32


async def post(url: str, first: int, warmup: int, count: int, repeat: int = 1) -> dict[str, Any]:
    return await poster.post(
        url, SECRET, "relayjob", first=first, warmup=warmup, count=count, concurrency=CONCURRENCY,
        repeat=repeat,
    )  # fmt: skip


# --- the receiving side --------------------------------------------------------------------------


class Recorder:
    """The trivial report callback: count, remember when, say "known"."""

    def __init__(self) -> None:
        self.count = 0
        self.last_at = 0.0

    async def report(self, api_job: ApiJob) -> bool:
        self.count += 1
        self.last_at = time.time()
        return True

    async def wait_for(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.count < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.count} of {n} events arrived")
            await asyncio.sleep(0.005)


@dataclass(frozen=True, slots=True)
class Run:
    per_second: float  # end to end
    posted_per_second: float  # what the poster saw: the relay's (or receiver's) answers
    lag: float  # last post answered -> last event acknowledged (relay) / reported (bound)
    statuses: dict[str, int]


async def through_relay(tmp: Path, first: int, warmup: int, count: int) -> Run:
    tmp.mkdir(parents=True, exist_ok=True)
    relay = RelayProcess(
        tmp, free_port(), "--rate-per-minute", str(10**9), "--max-held", str(10**7), tokens={TOKEN: CHANNEL}
    )
    await relay.start()
    recorder = Recorder()
    subscriber = RelaySubscriber(relay.base_url, TOKEN, SECRET, recorder.report)
    await subscriber.start()
    try:
        deadline = time.monotonic() + 30
        while not subscriber.connected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the subscriber never connected:\n{relay.log()[-2000:]}")
            await asyncio.sleep(0.01)
        answer = await post(f"{relay.base_url}{WEBHOOK_PATH}/{CHANNEL}", first, warmup, count)
        await recorder.wait_for(warmup + count, timeout=120)
        last = subscriber.last_id
        while subscriber.acked_id != last:  # the acknowledgement of the last event was answered
            await asyncio.sleep(0.002)
        acked_at = time.time()
        if subscriber.rejected or subscriber.given_up:
            say(f"[relay] subscriber rejected {subscriber.rejected}, gave up {subscriber.given_up}")
    finally:
        await subscriber.stop()
        await relay.stop()
    return Run(
        count / (acked_at - answer["began"]),
        count / (answer["ended"] - answer["began"]),
        acked_at - answer["ended"],
        answer["statuses"],
    )


@dataclass(frozen=True, slots=True)
class Storm:
    posts_per_second: float
    held: int  # events the relay held once the storm was over
    streamed: int  # events the subscriber then received
    statuses: dict[str, int]


async def retry_storm(tmp: Path, first: int, count: int, repeat: int) -> Storm:
    """``count`` events each posted ``repeat`` times while no subscriber reads (the bot is away,
    the API retries every webhook): what the relay holds, and what the bot then receives."""
    tmp.mkdir(parents=True, exist_ok=True)
    relay = RelayProcess(
        tmp, free_port(), "--rate-per-minute", str(10**9), "--max-held", str(10**7), tokens={TOKEN: CHANNEL}
    )
    await relay.start()
    recorder = Recorder()
    subscriber = RelaySubscriber(relay.base_url, TOKEN, SECRET, recorder.report)
    try:
        answer = await post(f"{relay.base_url}{WEBHOOK_PATH}/{CHANNEL}", first, 0, count, repeat)
        async with httpx.AsyncClient() as http:
            held = int((await http.get(f"{relay.base_url}/healthz")).json()["held"])
        await subscriber.start()
        await recorder.wait_for(count, timeout=120)
        await asyncio.sleep(0.5)  # a second copy, if one were held, would have come by now
    finally:
        await subscriber.stop()
        await relay.stop()
    return Storm(answer["count"] / answer["seconds"], held, recorder.count, answer["statuses"])


async def direct(first: int, warmup: int, count: int) -> Run:
    recorder = Recorder()
    receiver = WebhookReceiver(SECRET, recorder.report)
    await receiver.start("127.0.0.1", 0)
    try:
        answer = await post(f"http://127.0.0.1:{receiver.port}{WEBHOOK_PATH}", first, warmup, count)
        await recorder.wait_for(warmup + count, timeout=60)
    finally:
        await receiver.stop()
    return Run(
        count / (recorder.last_at - answer["began"]),
        count / (answer["ended"] - answer["began"]),
        recorder.last_at - answer["ended"],
        answer["statuses"],
    )


async def _measure(smoke: bool, result: Result) -> None:
    count = 100 if smoke else 5_000
    warmup = 20 if smoke else 200
    rounds = 1 if smoke else 3
    tmp = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    relayed: list[Run] = []
    bound: list[Run] = []
    first = 0
    for n in range(rounds):  # interleaved, so a noisy neighbour hits both alike
        bound.append(await direct(first, warmup, count))
        relayed.append(await through_relay(tmp / f"round-{n}", first, warmup, count))
        first += warmup + count

    def mid(runs: list[Run]) -> Run:
        return sorted(runs, key=lambda r: r.per_second)[len(runs) // 2]

    repeat = 5
    storm = await retry_storm(tmp / "storm", first, count // repeat, repeat)
    r, b = mid(relayed), mid(bound)
    result.figure(
        "events/s end to end through the relay (post -> stream -> verified, reported, acknowledged)",
        rate(r.per_second, "/s"),
        rate(b.per_second, "/s posted straight to the in-process WebhookReceiver"),
    )
    result.figure("relay / direct", pct(r.per_second / b.per_second))
    result.figure(
        "posts answered per second (stored and committed by the relay)",
        rate(r.posted_per_second, "/s"),
        rate(b.posted_per_second, "/s by the receiver"),
    )
    result.figure(
        "last post answered -> last event acknowledged by the subscriber",
        f"{r.lag * 1000:,.0f} ms",
        f"{max(0.0, b.lag) * 1000:,.0f} ms to the receiver's report (it reports before it answers)",
    )
    statuses: dict[str, int] = {}
    for x in relayed:
        for k, v in x.statuses.items():
            statuses[k] = statuses.get(k, 0) + v
    answers = ", ".join(f"{v:,} x {k}" for k, v in sorted(statuses.items()))
    result.figure("relay answers to the posts", answers)
    result.figure(
        f"retry storm: {count // repeat:,} events x {repeat} posts each, no subscriber reading; events held",
        f"{storm.held:,}",
        f"{count:,}, one per post, before the relay kept an event once",
    )
    result.figure(
        "retry storm: events the subscriber then received; posts answered per second",
        f"{storm.streamed:,}; {rate(storm.posts_per_second, '/s')}",
    )
    result.note(
        f"{count:,} timed events after {warmup:,} untimed, median of {rounds} round(s), direct and relayed "
        f"rounds interleaved; a fresh relay (database, process) per round; {CONCURRENCY} concurrent "
        "senders in one poster process. The report callback only counts: the bot's completion "
        "transaction is benchmark 4's first half."
    )
    if any(k != "200" for k in statuses):
        result.note("Some relay answers were not 200: see the answers figure.")


def run(smoke: bool) -> Result:
    result = Result("relay", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
