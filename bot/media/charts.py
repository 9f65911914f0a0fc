"""A server's last 30 days at a glance: credits spent per day and jobs per member, as a PNG.

Drawn with matplotlib (its Agg backend: no display), so moderators look instead of reading a
ledger. Synchronous CPU work: callers run it in a thread.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import date

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to memory, never to a screen

import matplotlib.pyplot as plt


def usage_chart(per_day: Sequence[tuple[date, int]], per_member: Sequence[tuple[str, int]]) -> bytes:
    """Two panels: credits spent per day (bars) and jobs per member, most first (top ten)."""
    figure, (spend, members) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    try:
        days = [d for d, _ in per_day]
        spend.bar(days, [c for _, c in per_day], color="#5865F2")
        spend.set_title("Credits spent per day (30 days)")
        spend.tick_params(axis="x", labelrotation=45, labelsize=7)
        top = list(per_member)[:10][::-1]  # the biggest on top
        members.barh([name for name, _ in top], [n for _, n in top], color="#57F287")
        members.set_title("Jobs per member (top ten)")
        members.tick_params(axis="y", labelsize=7)
        figure.tight_layout()
        out = io.BytesIO()
        figure.savefig(out, format="png")
        return out.getvalue()
    finally:
        plt.close(figure)
