"""Benchmark 6b, a delivery burst: 100 jobs the API completes at the same instant, each -> its
member's message; before (one delivery loop) and after (the pool of workers, issue 16).

The real bot (``python -m bot``, webhooks on) against the time-scaled API emulator and the
Discord fake, both in this process, as benchmark 6. N members (distinct: one job each, so the
per-member lock never makes one wait for another's result) send one /animate each at once. The
API account is enterprise-like with room for all of them at once (:data:`CONCURRENCY` concurrent
jobs, the bot told the same with ``ENTERPRISE_LIMITS``), and every job has the same length.

"The same instant": the creates themselves spread over a second or more (admission, the
scheduler, one create after another), so equal job lengths alone would spread the completions
as much. The emulator is the test rig, so the benchmark holds each job at the end of its render
(:class:`Gate`, around the emulator's render cache) until all N are held and the bot has been
quiet for :data:`SETTLE` s, then lets them all go: every job is marked completed (its
``completedAt``) and its webhook posted in one pass of the rig's loop. The spread of the N
``completedAt`` is printed.

Measured per job exactly as benchmark 6 (its code, :func:`bench.bench_delivery.collect`): the
emulator's ``completedAt`` -> the fake's record of the message with the video ("total"), and
that less the upload as the fake saw it ("overhead"). p50 / p95 / max over every job of every
burst of a worker count. Also the CPU the bot process and this process (the emulator and the fake)
used from the release until the bot's store said every job was delivered, over that wall time:
on this 2-core machine, what bounds a burst's drain.

Before and after on the same code path and the same machine: the bot with ``DELIVERY_WORKERS=1``
(what delivery was before 3fdb4b7: one loop) and with the default (4), one fresh world (emulator,
fake, bot, database) per burst, in the order of :data:`ROUNDS`. On loopback a delivery is mostly
CPU (the fake answers in about a millisecond); Discord's answers take far longer, which is what a
pool of workers overlaps, so a few bursts also run with :data:`LATENCY` added to each of the bot's
Discord webhook requests by the fake (its ``inject(..., delay=)``), a stated assumption, not a
measurement of Discord.

No floor is measured here: benchmark 6's bare deliverer is the floor of one delivery; a burst's
floor is the bot's own CPU and the fake's.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.bench_ack_scale import machine_cpu
from bench.bench_delivery import Measured, collect
from bench.common import Result, median, say
from bench.worlds import World, ms, process_cpu, wait_for_log, world
from emulator.config import AccountConfig
from emulator.render import RenderCache
from testkit.accounts import FREE_KEY, PRO_KEY, WEBHOOK_SECRET

TITLE = "6b. Delivery burst"
ORDER = 6

TIME_SCALE = 0.05  # a job: 2 + 15 emulated s = 0.85 s, then held at the gate
CONCURRENCY = 200  # the account's concurrent jobs: the whole burst at the API at once
SETTLE = 2.0  # seconds with every job held and the bot's admission work done, before the release
# Each burst's (Discord latency, delivery workers), one fresh world each: 1, 4, 4, 1 (a drift in a
# shared machine's load falls on both), twice on loopback, then once with LATENCY added.
LATENCY = 0.1  # seconds added to each of the bot's Discord webhook requests in the latency bursts
ROUNDS = tuple((0.0, k) for k in (1, 4, 4, 1, 1, 4, 4, 1)) + tuple((LATENCY, k) for k in (1, 4, 4, 1))
SMOKE_ROUNDS = ((0.0, 1), (0.0, 4), (LATENCY, 1), (LATENCY, 4))
DEFAULT_WORKERS = 4  # the bot's default (bot.pipeline.delivery.WORKERS)


class Gate:
    """Holds every job the emulator renders, once rendered, until :meth:`release`; counts them.

    Wraps the emulator's :meth:`RenderCache.render` on its instance: after the wait the job's
    own time is already over (the wait is longer), so it is marked completed at once."""

    def __init__(self, renders: RenderCache) -> None:
        self.held = 0
        self._open = asyncio.Event()
        original: Callable[..., Any] = renders.render

        async def held(*args: Any, **kwargs: Any) -> Any:
            result = await original(*args, **kwargs)
            self.held += 1
            await self._open.wait()
            return result

        renders.render = held  # type: ignore[method-assign]

    def release(self) -> None:
        self._open.set()


def accounts() -> list[AccountConfig]:
    """The bot's key (PRO_KEY, label "pro") on an enterprise-like account with room for the burst."""
    return [
        AccountConfig(
            key=PRO_KEY, plan="enterprise", credits=10_000_000, webhook_secret=WEBHOOK_SECRET,
            label="pro", requests_per_minute=6_000, concurrent_jobs=CONCURRENCY,
        ),
        AccountConfig(key=FREE_KEY, plan="free", credits=1_000, webhook_secret=WEBHOOK_SECRET, label="free"),
    ]  # fmt: skip


@dataclass
class Burst:
    latency: float
    workers: int
    measured: Measured
    spread: float  # first -> last completedAt of the burst
    drained: float  # first completedAt -> last message received
    drift: float
    bot_cores: float  # the bot process's CPU seconds / wall seconds, the release -> all delivered
    rig_cores: float  # the same for this process: the emulator and the fake
    other_cores: float  # the machine's busy CPU less those two: the neighbours'
    requests: Counter[str]  # Discord requests from the release until all were delivered, by route

    @property
    def cores(self) -> str:
        return f"{self.bot_cores:.2f} / {self.rig_cores:.2f} / {self.other_cores:.2f}"


@dataclass
class Pooled:
    bursts: list[Burst] = field(default_factory=list)

    @property
    def measured(self) -> Measured:
        return Measured(
            [s for b in self.bursts for s in b.measured.samples], sum(b.measured.missing for b in self.bursts)
        )

    def line(self, what: str) -> str:
        m = self.measured
        return f"{ms(m.p(50, what))} / {ms(m.p(95, what))} / {ms(m.p(100, what))}"


async def one_burst(w: World, n: int, latency: float, workers: int) -> Burst:
    gate = Gate(w.emu.service.renders)
    offsets = [w.fake_to_wall()]
    for member in w.members[:n]:  # distinct members, one /animate each, all at once
        await w.animate(member)
    deadline = time.monotonic() + 60 + n * 0.5
    while gate.held < n:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {gate.held} of {n} jobs reached the API:\n{w.bot.log()[-3000:]}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(SETTLE)
    if latency:  # Discord's round trip and upload time, on every follow-up and card edit from now on
        w.fake.inject("/webhooks/*", None, count=None, delay=latency)
    cpu = process_cpu(w.bot_pid), time.process_time(), machine_cpu(), time.monotonic()
    released, requests = w.fake.now(), len(w.fake.requests)
    gate.release()
    measured = await collect(w, n, offsets, timeout=60 + n * (0.5 + 4 * latency), poll=0.02)
    window = time.monotonic() - cpu[3]  # the release -> the store said all were delivered (+ <= 20 ms)
    bot_cpu, rig_cpu = process_cpu(w.bot_pid) - cpu[0], time.process_time() - cpu[1]
    others = machine_cpu() - cpu[2] - bot_cpu - rig_cpu
    # The last cards' edits follow the store's "delivered": let them land before the bot stops.
    w.fake.clear_injections()
    await asyncio.sleep(max(0.2, 3 * latency))
    routes = Counter(r.route or r.path for r in w.fake.requests[requests:] if r.time >= released)
    completions = [s.completed for s in measured.samples]
    received = [s.received for s in measured.samples]
    burst = Burst(
        latency,
        workers,
        measured,
        spread=max(completions) - min(completions),
        drained=max(received) - min(completions),
        drift=max(offsets) - min(offsets),
        bot_cores=bot_cpu / window,
        rig_cores=rig_cpu / window,
        other_cores=max(0.0, others) / window,
        requests=routes,
    )
    say(f"[delivery_burst] burst, {describe(burst)}")
    return burst


def describe(b: Burst) -> str:
    m = b.measured
    return (
        f"{b.workers} worker(s), {'+' + ms(b.latency) if b.latency else 'loopback'}: completion -> message "
        f"p50 / p95 / max {ms(m.p(50, 'total'))} / {ms(m.p(95, 'total'))} / {ms(m.p(100, 'total'))}; "
        f"completedAt spread {ms(b.spread)}; drained in {ms(b.drained)}; CPU bot / rig / others "
        f"{b.cores} cores"
    )


async def _measure(smoke: bool, result: Result) -> None:
    n = 5 if smoke else 100
    rounds = SMOKE_ROUNDS if smoke else ROUNDS
    bursts: list[Burst] = []
    for i, (latency, workers) in enumerate(rounds):
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-delivery-burst-{i}-w{workers}-"))
        extra = {
            "DOITONG_PLAN": "enterprise",
            "ENTERPRISE_LIMITS": f"6000/{CONCURRENCY}/unlimited",
            "DELIVERY_WORKERS": str(workers),
        }
        async with world(
            tmp, members=n, time_scale=TIME_SCALE, sync=False, emu={"accounts": accounts()}, extra=extra
        ) as w:
            # The pipeline starts just after discord.py's on_ready; it names its worker count.
            await wait_for_log(w.bot, f"delivery: {workers} worker(s)", timeout=30)
            bursts.append(await one_burst(w, n, latency, workers))
    for latency in sorted({b.latency for b in bursts}):
        before = Pooled([b for b in bursts if b.latency == latency and b.workers == 1])
        after = Pooled([b for b in bursts if b.latency == latency and b.workers == DEFAULT_WORKERS])
        compare(result, n, latency, before, after)
    result.figure(
        "completedAt spread within a burst (first -> last), worst burst", ms(max(b.spread for b in bursts))
    )
    result.figure(
        "clock offset drift within a burst (fake clock -> wall clock), worst",
        ms(max(b.drift for b in bursts)),
    )
    missing = sum(b.measured.missing for b in bursts)
    if missing:
        result.figure("deliveries not found in the fake's events", str(missing))
    result.block("Each burst, in the order run", "\n".join(describe(b) for b in bursts))
    loopback = [b for b in bursts if not b.latency]
    asked = Counter[str]()
    for b in loopback:
        asked.update(b.requests)
    result.block(
        "Discord requests while the loopback bursts drained, per delivered job",
        "\n".join(f"{count / (n * len(loopback)):.2f}  {route}" for route, count in asked.most_common()),
    )
    result.note(
        f"{n} /animate from {n} distinct members at once (gen-2, 5 s), one each; an enterprise-like "
        f"account with {CONCURRENCY} concurrent jobs (the bot's ENTERPRISE_LIMITS the same); time scale "
        f"{TIME_SCALE}; each job held at the emulator once rendered until all {n} were, then "
        f"released together after {SETTLE:.0f} s of quiet; webhooks on; every result by the "
        "interaction follow-up. Before = DELIVERY_WORKERS=1 (the single loop before 3fdb4b7), after "
        f"= the default {DEFAULT_WORKERS}; one fresh world per burst, in the order run (below). "
        f"'+{ms(LATENCY)}': the fake holds each of the bot's /webhooks/* requests (follow-ups, card "
        "edits) that long from the release on, for Discord's round trip and upload time."
    )


def compare(result: Result, n: int, latency: float, before: Pooled, after: Pooled) -> None:
    """The figures of one condition (loopback, or with ``latency`` added): after beside before."""
    where = f"+{ms(latency)} per Discord request" if latency else "loopback"
    jobs = f"{len(after.measured.samples)} jobs, {len(after.bursts)} bursts of {n}"
    result.figure(
        f"{where}: completion -> message received, {DEFAULT_WORKERS} workers: p50 / p95 / max ({jobs})",
        after.line("total"),
        f"{before.line('total')} with 1 worker (before)",
    )
    if not latency:  # with latency added, the fake's "upload" includes the added wait
        result.figure(
            f"{where}: the same less the upload as the fake saw it (overhead): p50 / p95 / max",
            after.line("overhead"),
            f"{before.line('overhead')} with 1 worker (before)",
        )
    p95_before, p95_after = before.measured.p(95, "total"), after.measured.p(95, "total")
    ratio = p95_before / p95_after
    result.figure(f"{where}: p95 completion -> message, before / after", f"{ratio:.2f}x")
    p95s_before = [b.measured.p(95, "total") for b in before.bursts]
    p95s_after = [b.measured.p(95, "total") for b in after.bursts]
    result.figure(
        f"{where}: median of the bursts' p95, before / after",
        f"{median(p95s_before) / median(p95s_after):.2f}x",
        f"{ms(median(p95s_before))} / {ms(median(p95s_after))}",
    )
    result.figure(
        f"{where}: burst drained (first completedAt -> last message), per burst",
        ", ".join(ms(b.drained) for b in after.bursts),
        ", ".join(ms(b.drained) for b in before.bursts) + " with 1 worker",
    )
    result.figure(
        f"{where}: CPU while a burst drained, bot / rig (emulator + fake) / others, cores, per burst",
        ", ".join(b.cores for b in after.bursts),
        ", ".join(b.cores for b in before.bursts) + " with 1 worker",
    )
    result.target(
        f"{where}: p95 with {DEFAULT_WORKERS} workers below p95 with 1 (issue 16: before and after)",
        f"{ms(p95_after)} against {ms(p95_before)} ({ratio:.2f}x)",
        p95_after < p95_before,
    )


def run(smoke: bool) -> Result:
    result = Result("delivery_burst", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
