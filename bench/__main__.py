"""Run the benchmarks: ``python -m bench [--smoke] [--out FILE] [NAME ...]``.

The report goes to a temporary file unless ``--out`` names one. ``bench/RESULTS.md`` is never
written by default, even by a full run: beside the generated tables it holds hand-written
sections (before/after comparisons, profiles) that a rewrite would drop; a run's report is
copied into it, by hand or with ``--out bench/RESULTS.md`` on purpose. ``--smoke`` runs tiny
sizes in seconds (so the benchmarks cannot rot). The exit code is non-zero only when a
benchmark crashed; a missed target is a finding printed in the report, not a failure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import os
import pkgutil
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from types import ModuleType

import bench
from bench.common import ROOT, Result, machine, say


def discover() -> tuple[dict[str, ModuleType], dict[str, str]]:
    """Every ``bench_<name>`` module of the package, in ORDER (then name); and those that would
    not import, with their traceback (reported as crashed, the others still run)."""
    modules: dict[str, ModuleType] = {}
    broken: dict[str, str] = {}
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("bench_"):
            name = info.name.removeprefix("bench_")
            try:
                modules[name] = importlib.import_module(f"bench.{info.name}")
            except Exception:
                broken[name] = traceback.format_exc()
    ordered = dict(sorted(modules.items(), key=lambda kv: (getattr(kv[1], "ORDER", 99), kv[0])))
    return ordered, broken


def revision() -> str:
    """The commit measured, and whether the shipped code differed from it (a shared work tree)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "bot", "cogs"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" with uncommitted changes in bot/ or cogs/" if dirty else "")


def load() -> str:
    """The 1-minute load average: the machine may be shared, and other work skews figures."""
    return f"{os.getloadavg()[0]:.2f}" if hasattr(os, "getloadavg") else "unknown"


def render(
    results: list[Result],
    failures: dict[str, str],
    command: str,
    smoke: bool,
    loads: tuple[str, str],
    code: str,
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Benchmark results" + (" (smoke sizes: not the figures of record)" if smoke else ""),
        "",
        f"- Command: `{command}`",
        f"- Date: {now}",
        f"- Code: {code}",
        f"- Machine: {machine()}",
        f"- Load average (1 min) at the start / the end: {loads[0]} / {loads[1]}",
        "",
        "Each figure is printed beside a bound measured in the same run on the same machine; targets",
        "are the issue's and are reported, not asserted.",
        "",
        "## Targets",
        "",
        "| benchmark | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    for r in results:
        for t in r.targets:
            lines.append(f"| {r.title} | {t.text} | {t.measured} | {t.verdict} |")
    for name in failures:
        lines.append(f"| {name} | – | crashed | CRASHED |")
    for r in results:
        lines += ["", f"## {r.title}", "", "| figure | value | bound (same run) |", "|---|---|---|"]
        lines += [f"| {f.label} | {f.value} | {f.bound} |" for f in r.figures]
        if r.notes:
            lines.append("")
            lines += [f"- {n}" for n in r.notes]
        for caption, text in r.blocks:
            lines += ["", f"{caption}:", "", "```text", text.rstrip(), "```"]
    for name, trace in failures.items():
        lines += ["", f"## {name}: crashed", "", "```text", trace.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    available, broken = discover()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, in seconds")
    parser.add_argument("--out", type=Path, help="where to write the report (default: see above)")
    everything = [*available, *broken]
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"some of: {', '.join(everything)}")
    args = parser.parse_args(argv)
    unknown = set(args.names) - set(everything)
    if unknown:
        parser.error(f"no such benchmark: {', '.join(sorted(unknown))} (have: {', '.join(everything)})")
    chosen = {n: m for n, m in available.items() if not args.names or n in args.names}
    command = shlex.join([".venv/bin/python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    say(f"# {command}\n# {machine()}")

    load_before, code = load(), revision()
    results: list[Result] = []
    failures = {
        f"bench_{n} (import)": trace for n, trace in broken.items() if not args.names or n in args.names
    }
    for name, trace in failures.items():
        say(f"[{name}] CRASHED:\n{trace}")
    for name, module in chosen.items():
        say(f"\n== {module.TITLE} ({'smoke' if args.smoke else 'full size'}) ==")
        started = time.perf_counter()
        try:
            results.append(module.run(args.smoke))
        except Exception:
            failures[module.TITLE] = traceback.format_exc()
            say(f"[{name}] CRASHED:\n{failures[module.TITLE]}")
        say(f"[{name}] took {time.perf_counter() - started:.1f} s")

    out = args.out or Path(tempfile.mkstemp(prefix="bench-", suffix=".md")[1])
    out.write_text(render(results, failures, command, args.smoke, (load_before, load()), code))
    say(f"\nreport written to {out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
