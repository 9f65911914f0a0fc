"""Benchmark 3, API budget use: 500 jobs from 50 members through the real bot on one Pro account.

The real bot (``python -m bot``, as testkit.harness.BotProcess starts it) against the
time-scaled API emulator (Pro account: 10 concurrent jobs, 60 requests per 60 s window, both
scaled by the same factor as the jobs) and the Discord fake. 50 members each send ten /animate
(gen-2, 5 s), in the order that starves people under first-come-first-served: each member's
ten together, member after member. Every member has the Pro plan per person (10 concurrent, so
their ten are all admitted) and the server's pool is large, so nothing is refused. The run ends
when all 500 are delivered. Run twice: with webhooks (the poller is only a safety net) and
polling only (no webhook URL is given to the API).

Measured:

- Slot utilization while a backlog exists: every ~20 ms this process samples the emulator's
  running jobs for the account (``active_jobs``, as ``emu.stats()`` counts them) and the bot's
  queue (``SELECT count(*) ... state = 'queued'`` on the bot's SQLite file, read-only). The
  backlog is the span from the first to the last sample with a job queued; utilization is
  mean(active) / 10 over the samples in it.
- 429s: the account's ``rate_limited`` and the emulator's 429 answers.
- Status requests per completed job: the emulator's ``status_reads`` (one per job looked up; a
  batched GraphQL read of 10 jobs counts 10) over the jobs completed; beside it, the HTTP
  requests that were not creates (a batch counts once).
- Jain's fairness index of completions across members during the backlog: the emulator's
  completion time of each job (its ``completedAt``) mapped to the member through the bot's job
  row. Over the whole backlog every member gets all ten of theirs and the index says nothing
  (FIFO would score 1.0 too), so the verdict is taken over the first half of the backlog's
  completions, where a fair share is five each; the whole-backlog index is printed beside it.

Bounds (same run): the emulator's own capacity, 10 slots / the mean emulated job time measured
from its records, beside the completions per second over the backlog; and the plan's requests
per window beside the requests the bot used per window.

Left out: Discord's and the API's network (loopback), real job durations (time-scaled: a 17 s
job takes 17 x TIME_SCALE s here, so the bot's fixed per-job latencies weigh more than live).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import Result, pct, rate, say
from bench.worlds import World, jain, world
from testkit.accounts import PRO_KEY

TITLE = "3. API budget use"
ORDER = 3

TIME_SCALE = 0.05  # a 17 s job (2 s queued + 15 s rendering) takes 0.85 s; the 60 s window 3 s
PER_MEMBER = 10
SLOTS = 10  # the Pro plan's concurrent jobs
TARGET_UTILIZATION = 0.95
TARGET_READS = {True: 1.0, False: 3.0}  # webhooks / polling only
TARGET_JAIN = 0.95
RAMP = 5.0  # seconds: the start of the backlog, printed apart


@dataclass
class Sample:
    wall: float
    active: int
    queued: int


@dataclass
class Run:
    webhooks: bool
    jobs: int
    lost: int = 0  # /animate the bot did not acknowledge within Discord's 3 s (never admitted)
    samples: list[Sample] = field(default_factory=list)
    account: dict[str, Any] = field(default_factory=dict)
    responses: dict[str, int] = field(default_factory=dict)
    completions: list[tuple[float, int]] = field(default_factory=list)  # (wall time, member id)
    job_seconds: list[float] = field(default_factory=list)  # emulated job time, created -> completed
    seconds: float = 0.0
    window: float = 60 * TIME_SCALE

    @property
    def mode(self) -> str:
        return "webhooks" if self.webhooks else "polling only"

    @property
    def backlog(self) -> tuple[float, float] | None:
        waiting = [s.wall for s in self.samples if s.queued > 0]
        return (waiting[0], waiting[-1]) if waiting else None

    def backlog_samples(self) -> list[Sample]:
        span = self.backlog
        return [s for s in self.samples if span and span[0] <= s.wall <= span[1]]

    def utilization(self) -> float:
        inside = self.backlog_samples()
        return statistics.fmean(s.active for s in inside) / SLOTS if inside else float("nan")

    def completed(self) -> int:
        return len(self.completions)

    def status_reads_per_job(self) -> float:
        return self.account["status_reads"] / max(1, self.completed())

    def status_http_per_job(self) -> float:
        creates = self.account["jobs_created"] + self.account["idempotent_replays"]
        return (self.account["requests"] - creates) / max(1, self.completed())

    def fairness(self, members: list[int]) -> tuple[float, float, list[int]]:
        """Jain's index over the first half of the backlog's completions, over all of them, and
        the first half's counts per member."""
        span = self.backlog
        if span is None:
            return float("nan"), float("nan"), []
        inside = sorted((t, m) for t, m in self.completions if span[0] <= t <= span[1])
        half = inside[: len(inside) // 2]
        first = Counter(m for _, m in half)
        whole = Counter(m for _, m in inside)
        counts = [first.get(m, 0) for m in members]
        return jain(counts), jain([whole.get(m, 0) for m in members]), counts


def active_jobs(w: World) -> int:
    """The account's running jobs, counted as ``emu.stats()`` counts ``active_jobs`` (read here
    directly: stats() also lists every job, too slow to call every 20 ms with 500 of them)."""
    account = w.emu.service.accounts[PRO_KEY]
    return sum(1 for key in account.active if not key.startswith("reservation-"))


async def sample(w: World, run: Run, period: float = 0.02) -> None:
    db: sqlite3.Connection | None = None
    try:
        while True:
            if db is None and w.real.db.exists():
                db = sqlite3.connect(f"file:{w.real.db}?mode=ro", uri=True, timeout=0.05)
            queued = 0
            if db is not None:
                with contextlib.suppress(sqlite3.OperationalError):  # the bot is migrating, or busy
                    queued = db.execute("SELECT count(*) FROM jobs WHERE state = 'queued'").fetchone()[0]
            run.samples.append(Sample(time.time(), active_jobs(w), queued))
            await asyncio.sleep(period)
    finally:
        if db is not None:
            db.close()


def counts(w: World) -> tuple[int, int]:
    """(jobs recorded, jobs delivered) in the bot's database."""
    if not w.real.db.exists():
        return 0, 0
    with contextlib.closing(sqlite3.connect(f"file:{w.real.db}?mode=ro", uri=True, timeout=1)) as db:
        total, done = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE state = 'delivered') FROM jobs"
        ).fetchone()
    return int(total), int(done or 0)


def members_of_jobs(w: World) -> dict[str, int]:
    """API job id -> the member who asked, from the bot's job rows."""
    with contextlib.closing(sqlite3.connect(f"file:{w.real.db}?mode=ro", uri=True, timeout=1)) as db:
        rows = db.execute("SELECT api_job_id, user_id FROM jobs WHERE api_job_id IS NOT NULL").fetchall()
    return {api_id: user for api_id, user in rows}


async def one_run(tmp: Path, members: int, webhooks: bool) -> tuple[Run, list[int]]:
    run = Run(webhooks, members * PER_MEMBER)
    async with world(tmp, members=members, time_scale=TIME_SCALE, webhooks=webhooks, sync=False) as w:
        sampler = asyncio.create_task(sample(w, run))
        began = time.perf_counter()
        try:
            sent = []
            for member in w.members:  # each member's ten together, member after member
                for _ in range(PER_MEMBER):
                    sent.append(await w.animate(member))
            for it in sent:  # an interaction not acknowledged in Discord's 3 s is lost to the bot
                with contextlib.suppress(TimeoutError):
                    await it.wait_acknowledged(timeout=5)
            acked = [it for it in sent if it.ack is not None]
            run.lost = len(sent) - len(acked)
            for it in acked:  # each one admitted (its card) or answered
                with contextlib.suppress(TimeoutError):
                    await it.wait_for_messages(n=1, timeout=120)
            deadline = time.monotonic() + 60 + run.jobs * 17 * TIME_SCALE / SLOTS * 4
            while (state := counts(w))[1] < state[0] or state[0] == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"only {state[1]} of {state[0]} delivered in time:\n{w.bot.log()[-3000:]}"
                    )
                await asyncio.sleep(0.2)
            run.jobs = state[0]
            run.seconds = time.perf_counter() - began
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        stats = w.emu.stats()
        run.account = stats["accounts"]["pro"]
        run.responses = stats["responses_by_status"]
        owner = members_of_jobs(w)
        for job in w.emu.service.jobs.values():
            if job.completed_at is not None and job.status == "completed":
                run.completions.append((job.completed_at.timestamp(), owner.get(job.id, 0)))
                run.job_seconds.append((job.completed_at - job.created_at).total_seconds() / TIME_SCALE)
        ids = [m.id for m in w.members]
    return run, ids


def report(result: Result, run: Run, members: list[int]) -> None:
    mode = run.mode
    span = run.backlog
    backlog_s = span[1] - span[0] if span else 0.0
    util = run.utilization()
    mean_job = statistics.fmean(run.job_seconds) * TIME_SCALE if run.job_seconds else float("nan")
    in_backlog = [t for t, _ in run.completions if span and span[0] <= t <= span[1]]
    throughput = len(in_backlog) / backlog_s if backlog_s else float("nan")
    result.figure(
        f"{mode}: slot utilization while a backlog exists ({backlog_s:.1f} s, "
        f"{len(run.backlog_samples())} samples)",
        pct(util),
        "100% = all 10 Pro slots busy",
    )
    idle = (1 - util) * SLOTS * backlog_s / max(1, len(in_backlog))  # seconds a slot waits per job
    live = mean_job / TIME_SCALE
    inside = run.backlog_samples()
    if span and inside:
        early = [x.active for x in inside if x.wall < span[0] + RAMP]
        later = [x.active for x in inside if x.wall >= span[0] + RAMP]
        result.figure(
            f"{mode}: utilization in the backlog's first {RAMP:.0f} s / after",
            f"{pct(statistics.fmean(early) / SLOTS) if early else '-'} / "
            f"{pct(statistics.fmean(later) / SLOTS) if later else '-'}",
        )
    result.figure(
        f"{mode}: idle slot time per job turnover during the backlog",
        f"{idle * 1000:,.0f} ms",
        f"{mean_job * 1000:,.0f} ms = a job's time at the emulator (live: {live:.1f} s, where the "
        f"same idle time would leave {pct(live / (live + idle))} utilization)",
    )
    result.figure(
        f"{mode}: completions/s during the backlog",
        rate(throughput, "/s"),
        rate(SLOTS / mean_job, "/s = 10 slots / mean job time at the emulator")
        + f" ({mean_job:.2f} s real = {mean_job / TIME_SCALE:.1f} s emulated)",
    )
    r429 = run.account["rate_limited"]
    answers429 = run.responses.get("429", 0)
    result.figure(f"{mode}: 429s", f"{r429} (emulator 429 answers: {answers429})")
    per_window = run.account["requests"] / (run.seconds / run.window) if run.seconds else float("nan")
    result.figure(
        f"{mode}: API requests per rate window (mean over the run)",
        f"{per_window:.1f}",
        "60 = the Pro plan's limit",
    )
    reads, http = run.status_reads_per_job(), run.status_http_per_job()
    result.figure(
        f"{mode}: status reads per completed job",
        f"{reads:.2f} ({run.account['status_reads']} reads / {run.completed()} jobs)",
        f"{http:.2f} status HTTP requests per job (a batch counts once)",
    )
    first_half, whole, counts = run.fairness(members)
    spread = f"{min(counts)}..{max(counts)} per member" if counts else "-"
    result.figure(
        f"{mode}: Jain's index, first half of the backlog's completions",
        f"{first_half:.3f} ({spread})",
        f"{whole:.3f} over the whole backlog",
    )
    result.figure(f"{mode}: wall time, first /animate to last delivery", f"{run.seconds:.1f} s")
    result.figure(
        f"{mode}: /animate lost (not acknowledged within 3 s)", f"{run.lost} of {run.lost + run.jobs}"
    )
    if run.webhooks:
        goal = f"utilization >= {pct(TARGET_UTILIZATION)} (webhooks)"
        result.target(goal, pct(util), util >= TARGET_UTILIZATION)
    else:
        result.note(f"Polling only: slot utilization {pct(util)} (the target is read with webhooks).")
    result.target(f"0 x 429 ({mode})", str(r429 + answers429), r429 + answers429 == 0)
    limit = TARGET_READS[run.webhooks]
    result.target(f"status reads per job <= {limit:g} ({mode})", f"{reads:.2f}", reads <= limit)
    if run.webhooks:
        goal = f"Jain's index >= {TARGET_JAIN} (webhooks)"
        result.target(goal, f"{first_half:.3f}", first_half >= TARGET_JAIN)
    else:
        result.note(f"Polling only: Jain's index {first_half:.3f} over the first half.")


async def _measure(smoke: bool, result: Result) -> None:
    members = 4 if smoke else 50
    tmp = Path(tempfile.mkdtemp(prefix="bench-budget-"))
    for webhooks in (True, False):
        run, ids = await one_run(tmp / ("webhooks" if webhooks else "polling"), members, webhooks)
        say(f"[budget] {run.mode}: {run.jobs} jobs delivered in {run.seconds:.1f} s ({run.lost} lost)")
        report(result, run, ids)
    result.note(
        f"{members} members x {PER_MEMBER} /animate (gen-2, 5 s), each member's together, member after "
        f"member; Pro account at the emulator, time scale {TIME_SCALE} (a job: 2 + 15 emulated s; the "
        f"rate window {60 * TIME_SCALE:.0f} s); the bot's DOITONG_RATE_WINDOW matches. Per-person plan "
        "Pro (DEFAULT_USER_PLAN), pool 10,000,000 credits."
    )
    result.note(
        f"Utilization in the backlog's first {RAMP:.0f} s is printed apart: those seconds overlap the bot "
        "admitting the burst (all 500 /animate arrive within a second or two)."
    )
    result.note(
        "Status reads: the emulator's per-job lookups (status_reads). HTTP requests that were not "
        "creates = requests - jobs_created - idempotent replays."
    )


def run(smoke: bool) -> Result:
    result = Result("budget", TITLE)
    asyncio.run(_measure(smoke, result))
    return result
