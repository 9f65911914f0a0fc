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
fake, bot, database) per burst, in the order :data:`ROUNDS` (1, 4, 4, 1, twice: a drift in the load of a
shared machine falls on both). No floor is measured here: benchmark 6's bare deliverer is the
floor of one delivery; a burst's floor is the bot's own CPU and the fake's.
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
ROUNDS = (1, 4, 4, 1, 1, 4, 4, 1)  # delivery workers of each burst's bot, one fresh world each
SMOKE_ROUNDS = (1, 4)
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


async def one_burst(w: World, n: int, workers: int) -> Burst:
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
    cpu = process_cpu(w.bot_pid), time.process_time(), machine_cpu(), time.monotonic()
    released, requests = w.fake.now(), len(w.fake.requests)
    gate.release()
    measured = await collect(w, n, offsets, timeout=60 + n * 0.5, poll=0.02)
    window = time.monotonic() - cpu[3]  # the release -> the store said all were delivered (+ <= 20 ms)
    bot_cpu, rig_cpu = process_cpu(w.bot_pid) - cpu[0], time.process_time() - cpu[1]
    others = machine_cpu() - cpu[2] - bot_cpu - rig_cpu
    routes = Counter(r.route or r.path for r in w.fake.requests[requests:] if r.time >= released)
    completions = [s.completed for s in measured.samples]
    received = [s.received for s in measured.samples]
    burst = Burst(
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
    say(
        f"[delivery_burst] burst with {workers} worker(s): completion -> message p50 / p95 / max "
        f"{ms(measured.p(50, 'total'))} / {ms(measured.p(95, 'total'))} / {ms(measured.p(100, 'total'))}; "
        f"completions spread {ms(burst.spread)}, drained in {ms(burst.drained)}; CPU while it drained: "
        f"bot {burst.bot_cores:.2f}, rig {burst.rig_cores:.2f}, others {burst.other_cores:.2f} cores"
    )
    return burst


async def _measure(smoke: bool, result: Result) -> None:
    n = 5 if smoke else 100
    rounds = SMOKE_ROUNDS if smoke else ROUNDS
    pooled: dict[int, Pooled] = {k: Pooled() for k in sorted(set(rounds))}
    for i, workers in enumerate(rounds):
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
            pooled[workers].bursts.append(await one_burst(w, n, workers))
    before, after = pooled[1], pooled[DEFAULT_WORKERS]
    per_burst = len(rounds) // len(pooled)
    jobs = f"{len(after.measured.samples)} jobs, {per_burst} bursts of {n}"
    result.figure(
        f"completion -> message received, {DEFAULT_WORKERS} workers: p50 / p95 / max ({jobs})",
        after.line("total"),
        f"{before.line('total')} with 1 worker (before)",
    )
    result.figure(
        "the same less the upload as the fake saw it (overhead): p50 / p95 / max",
        after.line("overhead"),
        f"{before.line('overhead')} with 1 worker (before)",
    )
    every = [b for p in pooled.values() for b in p.bursts]
    p95_before, p95_after = before.measured.p(95, "total"), after.measured.p(95, "total")
    ratio = p95_before / p95_after
    result.figure("p95 completion -> message, before / after", f"{ratio:.2f}x")
    result.figure(
        "burst drained (first completedAt -> last message), per burst",
        ", ".join(ms(b.drained) for b in after.bursts),
        ", ".join(ms(b.drained) for b in before.bursts) + " with 1 worker",
    )
    result.figure(
        "CPU while a burst drained, bot / rig (emulator + fake) / others, cores, per burst",
        ", ".join(b.cores for b in after.bursts),
        ", ".join(b.cores for b in before.bursts) + " with 1 worker",
    )
    p95s = {k: [b.measured.p(95, "total") for b in p.bursts] for k, p in pooled.items()}
    result.figure(
        "median of the bursts' p95, before / after",
        f"{median(p95s[1]) / median(p95s[DEFAULT_WORKERS]):.2f}x",
        f"{ms(median(p95s[1]))} / {ms(median(p95s[DEFAULT_WORKERS]))}",
    )
    asked = Counter[str]()
    for b in every:
        asked.update(b.requests)
    result.block(
        "Discord requests while the bursts drained, per delivered job (all bursts)",
        "\n".join(f"{count / (n * len(every)):.2f}  {route}" for route, count in asked.most_common()),
    )
    result.figure(
        "completedAt spread within a burst (first -> last), worst burst", ms(max(b.spread for b in every))
    )
    result.figure(
        "clock offset drift within a burst (fake clock -> wall clock), worst", ms(max(b.drift for b in every))
    )
    missing = sum(b.measured.missing for b in every)
    if missing:
        result.figure("deliveries not found in the fake's events", str(missing))
    result.target(
        f"p95 with {DEFAULT_WORKERS} workers below p95 with 1 (issue 16: before and after)",
        f"{ms(p95_after)} against {ms(p95_before)} ({ratio:.2f}x)",
        p95_after < p95_before,
    )
    result.block(
        "Each burst, in the order run (completion -> message: p50 / p95 / max)",
        "\n".join(
            f"{b.workers} worker(s): {ms(b.measured.p(50, 'total'))} / {ms(b.measured.p(95, 'total'))} / "
            f"{ms(b.measured.p(100, 'total'))}; drained in {ms(b.drained)}; CPU bot / rig / others "
            f"{b.cores} cores"
            for b in _in_order(pooled, rounds)
        ),
    )
    result.note(
        f"{n} /animate from {n} distinct members at once (gen-2, 5 s), one each; an enterprise-like "
        f"account with {CONCURRENCY} concurrent jobs (the bot's ENTERPRISE_LIMITS the same); time scale "
        f"{TIME_SCALE}; each job held at the emulator once rendered until all {n} were, then "
        f"released together after {SETTLE:.0f} s of quiet; webhooks on; every result by the "
        "interaction follow-up. Before = DELIVERY_WORKERS=1 (the single loop before 3fdb4b7), after "
        f"= the default {DEFAULT_WORKERS}; one fresh world per burst, in the order "
        f"{', '.join(map(str, rounds))}."
    )


def _in_order(pooled: dict[int, Pooled], rounds: tuple[int, ...]) -> list[Burst]:
    """The bursts in the order they ran (each worker count's list is in its own run order)."""
    taken = dict.fromkeys(pooled, 0)
    order = []
    for workers in rounds:
        order.append(pooled[workers].bursts[taken[workers]])
        taken[workers] += 1
    return order


def run(smoke: bool) -> Result:
    result = Result("delivery_burst", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
