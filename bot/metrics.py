"""What one bot process tells Prometheus, at ``GET /metrics`` on the receiver's port.

prometheus-client does the exposition format and the histograms. The figures that already live
somewhere (jobs by state in the store, requests and 429s in the API client, the budget's window)
are read at scrape time rather than counted twice; only what happens in passing (how long an
admission or a delivery took) is observed as it happens. Each process has its own registry, so
several bots in one test process do not mix their figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = CONTENT_TYPE_LATEST

# Admission is a picture fetch plus one transaction: milliseconds to a few seconds.
ADMISSION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Delivery (the API's completion -> the message in Discord) includes a video download and upload.
DELIVERY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The figures read at scrape time (the store's counts are read just before rendering)."""

    jobs_by_state: Mapping[str, int]
    api_requests: int
    api_rate_limited: int
    budget_in_use: int
    budget_limit: int
    leader: bool
    shards: tuple[int, ...] = ()


class _Scraped(Collector):
    def __init__(self) -> None:
        self.snapshot: Snapshot | None = None

    def collect(self) -> Iterable[Metric]:
        s = self.snapshot
        if s is None:
            return
        jobs = GaugeMetricFamily("animate_jobs", "Jobs in the store by state", labels=["state"])
        for state, count in sorted(s.jobs_by_state.items()):
            jobs.add_metric([state], count)
        yield jobs
        yield GaugeMetricFamily(
            "animate_queue_depth", "Jobs waiting for the API (queued)", value=s.jobs_by_state.get("queued", 0)
        )
        yield CounterMetricFamily(
            "animate_api_requests", "Requests this process sent to the API", value=s.api_requests
        )
        yield CounterMetricFamily(
            "animate_api_rate_limited", "429 answers this process got from the API", value=s.api_rate_limited
        )
        yield GaugeMetricFamily(
            "animate_api_budget_in_use", "Requests of the current rate window taken", value=s.budget_in_use
        )
        yield GaugeMetricFamily(
            "animate_api_budget_limit", "Requests the plan allows per rate window", value=s.budget_limit
        )
        yield GaugeMetricFamily(
            "animate_leader", "1 when this process is the leader (runs the scheduler)", value=int(s.leader)
        )
        shards = GaugeMetricFamily("animate_shard", "Discord shards this process serves", labels=["shard"])
        for shard in s.shards:
            shards.add_metric([str(shard)], 1)
        yield shards


class Metrics:
    """One process's registry: histograms observed as things happen, the rest read at scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.admission_seconds = Histogram(
            "animate_admission_seconds",
            "From /animate's defer to the job admitted (picture fetch and check, one transaction)",
            buckets=ADMISSION_BUCKETS,
            registry=self.registry,
        )
        self.delivery_seconds = Histogram(
            "animate_delivery_seconds",
            "From the API's completion to the result delivered in Discord",
            buckets=DELIVERY_BUCKETS,
            registry=self.registry,
        )
        self._scraped = _Scraped()
        self.registry.register(self._scraped)

    def render(self, snapshot: Snapshot) -> bytes:
        """The exposition text with ``snapshot`` as the scrape-time figures."""
        self._scraped.snapshot = snapshot
        return generate_latest(self.registry)
