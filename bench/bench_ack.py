"""Benchmark 1, acknowledgement latency: INTERACTION_CREATE sent -> defer callback received.

What is measured: for bursts of 1, 50 and 200 simultaneous /animate (each from a different
member of one server, with the test picture attached), the Discord fake's own record of each
interaction: from the moment its INTERACTION_CREATE frame was written to the bot's gateway socket
(``dispatched_at``) to the moment the fake had read the defer callback's body (``ack_latency``).
p50 and p99 over every interaction of every round at that size.

The bot is the real one (``python -m bot`` as a subprocess, as testkit.harness.BotProcess
starts it, webhooks on, commands published with ``python -m bot sync --guild``), against the
time-scaled API emulator. The emulator's jobs never finish during the run, so after the ten
slots of the Pro account fill, the rest wait in the bot's queue: every /animate still costs the
bot its full admission work (image fetched from the fake's CDN and decoded, quota + pool + job
row in one transaction, status card edit, scheduler wake) and that work competes with the
acknowledgements of the same burst, as it would live. Deliveries are left out (nothing
finishes), so no upload traffic shares the run.

The bound is the same fake's round trip to ``bench/minimal_bot.py``: discord.py, the same
intents and the same /animate options, a handler that only defers. Same bursts, same rounds.

Left out: Discord's own network (everything is loopback), and the time the fake takes to write
a frame (the clock starts once it is written). The fake, the emulator and the measuring all run
in this process; the fake's event-loop lag while a burst's acks are outstanding is printed, and the
CPU each side spent per interaction meanwhile, so that the fake's share of a latency can be read
off. At full size each burst size gets a fresh pair of worlds (one per bot, both open at once)
and the two bots' bursts alternate, so a noisy neighbour on the machine hits both alike; a real
bot's burst is followed by a wait until every /animate of it was answered (card shown).
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Result, say
from bench.worlds import World, lag_monitor, ms, percentile, process_cpu, world
from testkit.harness import BotProcess

TITLE = "1. Acknowledgement latency"
ORDER = 1

TARGET_P99 = 0.100  # seconds, at 200 simultaneous
TARGET_SIZE = 200
MEMBERS = 200
TIME_SCALE = 0.05
NEVER_FINISH = {"processing_seconds": 1e7}  # emulated seconds: the run ends long before


@dataclass
class Level:
    size: int
    rounds: int
    latencies: list[float] = field(default_factory=list)
    round_p99: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)  # the fake's event-loop lag during the bursts
    bot_cpu: float = 0.0  # seconds of the bot process's CPU while the acks were outstanding
    fake_cpu: float = 0.0  # the same for this process (the fake; the emulator idles meanwhile)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)

    def cpu_per_ack(self) -> tuple[float, float]:
        n = max(1, len(self.latencies))
        return self.bot_cpu / n, self.fake_cpu / n


async def burst(w: World, level: Level, first: int) -> None:
    """``level.size`` /animate at once; wait for every ack (and, for the real bot, its card)."""
    real = isinstance(w.bot, BotProcess)
    users = [w.members[(first + i) % len(w.members)] for i in range(level.size)]
    interactions = await asyncio.gather(*(w.animate(u) for u in users))
    bot_cpu, fake_cpu = process_cpu(w.bot_pid), time.process_time()  # every frame is written
    async with lag_monitor(level.lag):
        for it in interactions:
            await it.wait_acknowledged(timeout=5)
        level.bot_cpu += process_cpu(w.bot_pid) - bot_cpu
        level.fake_cpu += time.process_time() - fake_cpu
    latencies = [it.ack_latency for it in interactions if it.ack_latency is not None]
    level.latencies += latencies
    level.round_p99.append(percentile(latencies, 99))
    if real:  # settle: the burst's admission work is done before the next burst
        for it in interactions:
            await it.wait_for_messages(n=1, timeout=60)
    await asyncio.sleep(0.3)


async def measure(sizes: list[tuple[int, int]], fresh: bool, tmp: Path) -> tuple[list[Level], list[Level]]:
    """Both bots, each in its own world (emulator, fake, bot) and both worlds open at once, so
    their rounds interleave (minimal, real, minimal, real...) and a noisy neighbour on the
    machine hits both alike. A fresh pair of worlds per size when ``fresh``."""
    real = [Level(size, rounds) for size, rounds in sizes]
    bound = [Level(size, rounds) for size, rounds in sizes]
    pairs = list(zip(bound, real, strict=True))
    groups = [[pair] for pair in pairs] if fresh else [pairs]
    for n, group in enumerate(groups):
        async with contextlib.AsyncExitStack() as stack:
            kw = {"members": MEMBERS, "time_scale": TIME_SCALE, "emu": NEVER_FINISH}
            mw = await stack.enter_async_context(world(tmp / f"minimal-{n}", minimal=True, **kw))
            rw = await stack.enter_async_context(world(tmp / f"real-{n}", **kw))
            used = 0
            for b, r in group:
                for _ in range(r.rounds):
                    await burst(mw, b, used)
                    await burst(rw, r, used)
                    used += r.size
            refused = [e for e in rw.fake.events if e.ephemeral]
            if refused:
                say(f"[ack] note: {len(refused)} /animate were refused: {refused[0].content[:120]}")
    return real, bound


async def _measure(smoke: bool, result: Result) -> None:
    sizes = [(1, 5), (10, 1)] if smoke else [(1, 30), (50, 4), (200, 3)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-ack-"))
    began = time.perf_counter()
    real, bound = await measure(sizes, fresh=not smoke, tmp=tmp)
    say(f"[ack] both bots measured in {time.perf_counter() - began:.1f} s")

    for r, b in zip(real, bound, strict=True):
        result.figure(
            f"ack latency, {r.size} simultaneous (p50 / p99, {len(r.latencies)} interactions)",
            f"{ms(r.p(50))} / {ms(r.p(99))}",
            f"{ms(b.p(50))} / {ms(b.p(99))} minimal bot",
        )
    for r, b in zip(real, bound, strict=True):
        if r.rounds > 1 and r.size > 1:
            result.figure(
                f"p99 of each {r.size}-burst, in order",
                " · ".join(f"{x * 1000:.0f}" for x in r.round_p99) + " ms",
                " · ".join(f"{x * 1000:.0f}" for x in b.round_p99) + " ms minimal bot",
            )
    for r, b in zip(real, bound, strict=True):
        if r.size == 1:
            continue
        (rb, rf), (bb, bf) = r.cpu_per_ack(), b.cpu_per_ack()
        result.figure(
            f"CPU per interaction while {r.size}-bursts were acked (bot / fake)",
            f"{ms(rb)} / {ms(rf)}",
            f"{ms(bb)} / {ms(bf)} minimal bot",
        )
        result.figure(
            f"fake's event-loop lag during the {r.size}-bursts (p99 / max)",
            f"{ms(percentile(r.lag, 99))} / {ms(max(r.lag, default=0.0))}",
            f"{ms(percentile(b.lag, 99))} / {ms(max(b.lag, default=0.0))} minimal bot",
        )
    top, floor = real[-1], bound[-1]
    where = f"{TARGET_SIZE}" if top.size == TARGET_SIZE else f"{TARGET_SIZE} (smoke: at {top.size})"
    result.target(f"p99 < {TARGET_P99 * 1000:.0f} ms at {where}", ms(top.p(99)), top.p(99) < TARGET_P99)
    if floor.p(99) >= TARGET_P99:
        result.note(
            f"The bound misses the target too: the minimal bot's p99 at {floor.size} is {ms(floor.p(99))}. "
            "A burst's last ack waits for the bot to read every frame before it and send every "
            "callback before it, one event loop each side; the CPU per interaction above is that cost."
        )
    result.note(
        "Latency = the fake's INTERACTION_CREATE frame written -> the defer callback read "
        "(FakeInteraction.ack_latency). Real bot: python -m bot with webhooks, commands published "
        "by python -m bot sync --guild; each interaction from a different member; every /animate "
        "is admitted (Pro plan per member, large pool) and waits in the queue after the account's "
        "10 slots, so the bot's admission work shares the burst. Bound: bench/minimal_bot.py "
        "(discord.py, same intents and options, only defers)."
    )
    result.note(
        "Rounds per size: "
        + ", ".join(f"{lv.size} x {lv.rounds}" for lv in real)
        + (", each size in a fresh pair of worlds" if not smoke else ", one pair of worlds")
        + "; minimal and real bursts alternate. CPU: the bot's from /proc/<pid>/stat (10 ms ticks), "
        "this process's (the fake, the emulator idle) from process_time, from the last frame "
        "written to the last ack read."
    )


def run(smoke: bool) -> Result:
    result = Result("ack", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
