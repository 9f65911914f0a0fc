"""Benchmark 8, acknowledgement latency across processes: a 200-burst on one process or two.

What is measured: bursts of 200 simultaneous /animate, spread evenly over four servers, one on
each of the Discord fake's four shards (50 per server, each from a different member), and for
each interaction the fake's own ``ack_latency`` exactly as benchmark 1 takes it: from its
INTERACTION_CREATE frame written to the bot's gateway socket to the defer callback read. p50
and p99 over every interaction of every burst, for two configurations of the real bot (``python
-m bot run --shard-ids ... --shard-count 4``, webhooks on) on one throwaway PostgreSQL server:

- **one**: ONE process serving all four shards (``--shard-ids 0,1,2,3``);
- **two**: TWO processes with two shards each (``0,1`` and ``2,3``), one of them the leader.

Each configuration is its own world (emulator, fake, its own database on the same server), both
open at once, and their bursts alternate (one, two, two, one, ...) so a noisy neighbour on the
machine hits both alike. As in benchmark 1 the emulator's jobs never finish: after the Pro
account's ten slots fill, every /animate still costs its full admission (picture fetched and
decoded, the admission transaction on PostgreSQL, the status card, the scheduler's wake), and a
burst is followed by a wait until every card is shown. The target (the issue's) is the p99 of
two <= 0.6 x the p99 of one.

Also printed: the CPU each bot process spent, this process's (the fake and the emulator) and
PostgreSQL's (its server process and backends), per burst, while the acks were outstanding and
over the whole burst. Splitting the bot over two processes can only shorten the acks when there
is a free core for the second one; the machine's cores, and who else used them, say whether
there was.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.bench_ack import NEVER_FINISH, TIME_SCALE
from bench.common import Result, median, run_on_postgres, say
from bench.worlds import ShardedWorld, lag_monitor, ms, percentile, process_cpu, sharded_world
from testkit.postgres import PostgresError, PostgresServer, unique_name

TITLE = "8. Acknowledgement latency across processes"
ORDER = 8

SHARDS = 4
CONFIGS = {"one": [[0, 1, 2, 3]], "two": [[0, 1], [2, 3]]}
TARGET_RATIO = 0.6  # p99 of two processes / p99 of one, at 200 simultaneous
TARGET_SIZE = 200
WARM = 20  # one burst of this size per configuration first, not counted
ROUNDS = 12  # bursts of 200 per configuration at full size
# Each member's jobs never finish, and Pro allows 10 at once: 400 members take 20 + 12 x 200 /animate
# with at most 7 each, so none is refused.
MEMBERS = 400


@dataclass
class Side:
    """What one configuration measured."""

    name: str
    processes: list[list[int]]
    latencies: list[float] = field(default_factory=list)
    by_process: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    round_p99: list[float] = field(default_factory=list)
    round_others: list[float] = field(default_factory=list)  # cores the rest of the machine used
    lag: list[float] = field(default_factory=list)  # the fake's event-loop lag while acks were out
    bursts: int = 0
    # CPU seconds summed over the bursts: [bot process 0, bot process 1, ...], this process,
    # PostgreSQL, the whole machine (as cpu_now)
    ack_cpu: list[float] = field(default_factory=list)  # last frame written -> last ack read
    burst_cpu: list[float] = field(default_factory=list)  # before the first frame -> every card shown
    ack_wall: float = 0.0
    burst_wall: float = 0.0
    refused: int = 0
    leader: int | None = None  # which bot process leads (its /healthz says so)
    pg_known: bool = True  # False: an external server (TEST_POSTGRES_URL), its CPU not read

    def process_of(self, shard: int) -> int:
        return next(n for n, ids in enumerate(self.processes) if shard in ids)

    def p(self, q: float) -> float:
        return percentile(self.latencies, q)


class PostgresCpu:
    """CPU seconds of a PostgreSQL server started here: the postmaster, its live children (the
    backends and background workers, listed once before each burst) and the children it reaped."""

    def __init__(self, server: PostgresServer) -> None:
        self.postmaster: int | None = None
        self.children: list[int] = []
        if server.dir is not None:  # an external server (TEST_POSTGRES_URL) is not ours to read
            with contextlib.suppress(OSError, ValueError, IndexError):
                self.postmaster = int((server.data / "postmaster.pid").read_text().split()[0])

    def rescan(self) -> None:
        if self.postmaster is None:
            return
        children = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{entry.name}/stat") as f:
                if int(f.read().rpartition(")")[2].split()[1]) == self.postmaster:
                    children.append(int(entry.name))
        self.children = children

    def cpu(self) -> float:
        if self.postmaster is None:  # an external server: its CPU, if on this machine, is in "others"
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{self.postmaster}/stat") as f:
            fields = f.read().rpartition(")")[2].split()
        total = sum(int(x) for x in fields[11:15]) / tick  # its own and its reaped children's
        for pid in self.children:
            with contextlib.suppress(OSError):  # a backend that exited is in cutime now (or lost)
                total += process_cpu(pid)
        return total


def machine_cpu() -> float:
    """CPU seconds every core of the machine spent busy (not idle, not waiting for I/O) since boot:
    the first line of /proc/stat. Less what this benchmark's processes spent: everyone else's."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq = ticks[:7]  # steal and guest left out
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


async def leader_of(w: ShardedWorld, timeout: float = 30) -> int:
    """The index of the bot process whose /healthz says it leads (waits for there to be one)."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while True:
            for n, bot in enumerate(w.bots):
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    if (await http.get(bot.health_url, timeout=1.0)).json().get("leader") is True:
                        return n
            if time.monotonic() > deadline:
                raise TimeoutError("no bot process says it leads")
            await asyncio.sleep(0.1)


def cpu_now(w: ShardedWorld, pg: PostgresCpu) -> list[float]:
    """[each bot process, this process, PostgreSQL, the whole machine], CPU seconds so far."""
    return [*(process_cpu(pid) for pid in w.bot_pids), time.process_time(), pg.cpu(), machine_cpu()]


def add(into: list[float], before: list[float], after: list[float]) -> None:
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    if not into:
        into.extend(0.0 for _ in deltas)
    for i, d in enumerate(deltas):
        into[i] += d


async def burst(w: ShardedWorld, side: Side | None, size: int, first: int, pg: PostgresCpu) -> None:
    """``size`` /animate at once, interaction i in the server on shard ``i % 4`` by member
    ``first + i``; wait for every ack, then for every card. ``side`` None: a warm-up, not counted."""
    plan = [(w.members[(first + i) % len(w.members)], i % SHARDS) for i in range(size)]
    pg.rescan()
    began, wall0 = cpu_now(w, pg), time.perf_counter()
    interactions = await asyncio.gather(*(w.animate(user, shard) for user, shard in plan))
    written, wall1 = cpu_now(w, pg), time.perf_counter()  # every frame is written
    lag: list[float] = []
    async with lag_monitor(lag):
        for it in interactions:
            await it.wait_acknowledged(timeout=5)
        acked, wall2 = cpu_now(w, pg), time.perf_counter()
    for it in interactions:  # settle: the burst's admission work is done before the next burst
        await it.wait_for_messages(n=1, timeout=120)
    settled, wall3 = cpu_now(w, pg), time.perf_counter()
    if side is not None:
        latencies = [it.ack_latency for it in interactions if it.ack_latency is not None]
        side.latencies += latencies
        side.round_p99.append(percentile(latencies, 99))
        ours = sum(a - b for a, b in zip(acked[:-1], written[:-1], strict=True))
        side.round_others.append((acked[-1] - written[-1] - ours) / max(wall2 - wall1, 1e-9))
        for it, (_, shard) in zip(interactions, plan, strict=True):
            if it.ack_latency is not None:
                side.by_process[side.process_of(shard)].append(it.ack_latency)
        side.lag += lag
        side.bursts += 1
        add(side.ack_cpu, written, acked)
        add(side.burst_cpu, began, settled)
        side.ack_wall += wall2 - wall1
        side.burst_wall += wall3 - wall0
    await asyncio.sleep(0.3)


async def measure(server: PostgresServer, size: int, rounds: int, tmp: Path) -> list[Side]:
    """Both configurations open at once, each on its own database of ``server``; their bursts
    alternate, the order flipping every round (one, two, two, one, ...)."""
    sides = [Side(name, procs) for name, procs in CONFIGS.items()]
    names = [unique_name(f"bench_ack_{s.name}") for s in sides]
    for name in names:
        server.create_database(name)
    pg = PostgresCpu(server)
    for side in sides:
        side.pg_known = pg.postmaster is not None
    try:
        async with contextlib.AsyncExitStack() as stack:
            worlds = []
            for side, name in zip(sides, names, strict=True):
                began = time.perf_counter()
                w = await stack.enter_async_context(
                    sharded_world(
                        tmp / side.name, server.url(name), processes=side.processes, members=MEMBERS,
                        time_scale=TIME_SCALE, emu=NEVER_FINISH,
                    )
                )  # fmt: skip
                took = time.perf_counter() - began
                say(f"[ack_scale] {side.name}: {len(side.processes)} process(es) ready in {took:.1f} s")
                side.leader = await leader_of(w)
                worlds.append(w)
            for w in worlds:
                await burst(w, None, min(WARM, size), 0, pg)
            used = min(WARM, size)
            for r in range(rounds):
                order = [0, 1] if r % 2 == 0 else [1, 0]
                for k in order:
                    await burst(worlds[k], sides[k], size, used, pg)
                used += size
                say(
                    f"[ack_scale] round {r + 1}/{rounds}: p99 "
                    + ", ".join(f"{s.name} {ms(s.round_p99[-1])}" for s in sides)
                    + " (others on the machine meanwhile: "
                    + ", ".join(f"{s.round_others[-1]:.1f}" for s in sides)
                    + " cores)"
                )
            for side, w in zip(sides, worlds, strict=True):
                side.refused = sum(1 for e in w.fake.events if e.ephemeral)
                if side.refused:
                    first = next(e for e in w.fake.events if e.ephemeral)
                    say(f"[ack_scale] note: {side.name}: {side.refused} refused: {first.content[:120]}")
    finally:
        for name in names:
            with contextlib.suppress(PostgresError):
                server.drop_database(name)
    return sides


def cpu_floor(s: Side) -> float:
    """The shortest a burst's ack window could be on this machine's cores with nobody else on it,
    from the CPU our processes spent in it: no process faster than its own CPU time (each bot,
    and the fake and emulator, is one event loop), and no faster than all of it spread over
    every core. PostgreSQL's backends count in the total only. The bots' CPU in the window includes
    the admission work of the burst's first /animate that ran between later frames (as it would
    live): the floor is that of this bot, not of a bot that only acks."""
    n, cores = max(1, s.bursts), os.cpu_count() or 1
    ours = s.ack_cpu[:-1]
    return max(*ours[:-1], sum(ours) / cores) / n


def shards(ids: list[int]) -> str:
    return ",".join(map(str, ids))


def _report(result: Result, sides: list[Side], size: int, rounds: int, smoke: bool) -> None:
    one, two = sides
    for s in sides:
        result.figure(
            f"ack latency, {size} simultaneous over 4 shards, {s.name} "
            f"(p50 / p99, {len(s.latencies)} interactions)",
            f"{ms(s.p(50))} / {ms(s.p(99))}",
            f"{len(s.processes)} process(es): shards " + " and ".join(shards(ids) for ids in s.processes),
        )
    ratio = two.p(99) / one.p(99)
    result.figure("p99 two / p99 one", f"{ratio:.2f}", f"p50 two / p50 one {two.p(50) / one.p(50):.2f}")
    steady = median(two.round_p99) / median(one.round_p99)
    result.figure(
        "median of the bursts' p99, two / one",
        f"{steady:.2f}",
        f"{ms(median(two.round_p99))} / {ms(median(one.round_p99))} (less swayed by one noisy burst)",
    )
    for s in sides:
        result.figure(
            f"p99 of each {size}-burst in order, {s.name}",
            " · ".join(f"{x * 1000:.0f}" for x in s.round_p99) + " ms",
            "others' cores meanwhile: " + " · ".join(f"{x:.1f}" for x in s.round_others),
        )
    if len(two.processes) > 1:
        result.figure(
            "two: p50 / p99 by process",
            " ; ".join(
                f"shards {shards(two.processes[n])}{' (leader)' if n == two.leader else ''}: "
                f"{ms(percentile(v, 50))} / {ms(percentile(v, 99))}"
                for n, v in sorted(two.by_process.items())
            ),
        )
    for what, pick, wall in (
        ("while its acks were out", lambda s: s.ack_cpu, lambda s: s.ack_wall),
        ("until every card was shown", lambda s: s.burst_cpu, lambda s: s.burst_wall),
    ):
        for s in sides:
            cpu, n = pick(s), max(1, s.bursts)
            bots, rig, pg, everything = cpu[:-3], cpu[-3], cpu[-2], cpu[-1]
            others = everything - sum(cpu[:-1])
            result.figure(
                f"CPU per burst {what}, {s.name} (bot process(es) / this process / PostgreSQL / others)",
                " + ".join(ms(b / n) for b in bots)
                + f" / {ms(rig / n)} / {ms(pg / n) if s.pg_known else 'external'} / {ms(others / n)}",
                f"wall {ms(wall(s) / n)}: cores busy {everything / max(wall(s), 1e-9):.2f} of "
                f"{os.cpu_count()}, ours {(everything - others) / max(wall(s), 1e-9):.2f}",
            )
    floors = [cpu_floor(s) for s in sides]
    result.figure(
        f"shortest ack window the CPU allows on {os.cpu_count()} idle cores, one / two",
        f"{ms(floors[0])} / {ms(floors[1])}: two / one {floors[1] / floors[0]:.2f}",
        "max(the busiest process's CPU, all ours / cores), per burst",
    )
    for s in sides:
        result.figure(
            f"fake's event-loop lag while the acks were out, {s.name} (p99 / max)",
            f"{ms(percentile(s.lag, 99))} / {ms(max(s.lag, default=0.0))}",
        )
    where = f"{TARGET_SIZE}" if size == TARGET_SIZE else f"{TARGET_SIZE} (smoke: at {size})"
    result.target(
        f"p99 two processes <= {TARGET_RATIO:.1f}x one process at {where}",
        f"{ratio:.2f}x ({ms(two.p(99))} / {ms(one.p(99))})",
        ratio <= TARGET_RATIO,
    )
    result.note(
        "Latency = the fake's INTERACTION_CREATE frame written -> the defer callback read "
        "(FakeInteraction.ack_latency), as in benchmark 1. Real bot: python -m bot run --shard-ids ... "
        "--shard-count 4 with webhooks, DATABASE_URL on a throwaway PostgreSQL (testkit.postgres, "
        "fsync=off), commands published by python -m bot sync; four servers, one per shard of the fake, "
        f"each burst spread evenly over them, each interaction from a different member of {MEMBERS}; "
        "every /animate is admitted (Pro plan, large pool) and queued after the account's 10 slots (the "
        "emulator's jobs never finish)."
    )
    result.note(
        f"{rounds} bursts of {size} per configuration after one uncounted warm-up burst of "
        f"{min(WARM, size)} each; both configurations open at once (own emulator, fake and database "
        "each), bursts alternating one, two, two, one, ... CPU: the bots' from /proc/<pid>/stat (10 ms "
        "ticks), this process's (the fake and the emulator) from process_time, PostgreSQL's from its "
        "postmaster's and backends' /proc stat."
        + (" Smoke sizes: not the figures of record." if smoke else "")
    )


async def _measure(smoke: bool, result: Result, server: PostgresServer) -> None:
    size, rounds = (20, 2) if smoke else (TARGET_SIZE, ROUNDS)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ack-scale-"))
    began = time.perf_counter()
    sides = await measure(server, size, rounds, tmp)
    say(f"[ack_scale] both configurations measured in {time.perf_counter() - began:.1f} s")
    _report(result, sides, size, rounds, smoke)


def run(smoke: bool) -> Result:
    return run_on_postgres("ack_scale", TITLE, smoke, _measure)
