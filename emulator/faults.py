"""Fault injection: a deterministic queue plus seeded random rates.

Queued faults (``Emulator.inject`` or ``POST /_emulator/faults``), in the order given:

request faults, each taken by the next API request (POST /graphql, POST and GET
/v1/image_to_video...), one per request:
  ``500``         answer 500 INTERNAL_SERVER_ERROR before the request has any effect
  ``500-after``   do the request (create and bill the job...), then answer 500 (a lost response)
  ``429``         a spurious 429 RATE_LIMITED with Retry-After and the rate-limit headers
  ``slow:SECONDS`` do the request, then hold the answer SECONDS real seconds

error-format fault, taken by the next GraphQL error answer (whenever it comes):
  ``graphql-200`` that answer's errors go in an HTTP 200 instead of the matching status

job faults, taken by the next created job (each kind once; a job may take both):
  ``fail_job``     the job ends ``failed`` (credits refunded)
  ``drop_webhook`` its webhook is never sent

With an empty queue, ``error_rate``, ``rate_limit_rate``, ``slow_rate``, ``job_fail_rate`` and
``drop_webhook_rate`` roll a seeded RNG per request or per job.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from emulator.config import EmulatorConfig

FAULT_500 = "500"
FAULT_500_AFTER = "500-after"
FAULT_429 = "429"
FAULT_SLOW = "slow"
FAULT_GRAPHQL_200 = "graphql-200"
FAULT_FAIL_JOB = "fail_job"
FAULT_DROP_WEBHOOK = "drop_webhook"

FAULT_NAMES = (
    FAULT_500,
    FAULT_500_AFTER,
    FAULT_429,
    "slow:SECONDS",
    FAULT_GRAPHQL_200,
    FAULT_FAIL_JOB,
    FAULT_DROP_WEBHOOK,
)


@dataclass(frozen=True, slots=True)
class RequestFault:
    kind: str  # FAULT_500, FAULT_500_AFTER, FAULT_429 or FAULT_SLOW
    seconds: float = 0.0  # for FAULT_SLOW

    @property
    def name(self) -> str:
        return f"{FAULT_SLOW}:{self.seconds:g}" if self.kind == FAULT_SLOW else self.kind


@dataclass(frozen=True, slots=True)
class JobFaults:
    fail: bool
    drop_webhook: bool


def parse_fault(name: str) -> str | RequestFault:
    """A request fault, or the name of a job / error-format fault; ValueError if unknown."""
    raw = name.strip().lower()
    if raw.startswith(FAULT_SLOW + ":"):
        try:
            seconds = float(raw.split(":", 1)[1])
        except ValueError:
            raise ValueError(f"bad fault {name!r}: slow:SECONDS needs a number") from None
        if not 0 <= seconds <= 3600:
            raise ValueError(f"bad fault {name!r}: SECONDS must be 0..3600")
        return RequestFault(FAULT_SLOW, seconds)
    canonical = raw.replace("_", "-")
    if canonical in (FAULT_500, FAULT_500_AFTER, FAULT_429):
        return RequestFault(canonical)
    if canonical in ("graphql-200", "graphql200"):
        return FAULT_GRAPHQL_200
    if canonical in ("fail-job", "job-fail"):
        return FAULT_FAIL_JOB
    if canonical in ("drop-webhook", "webhook-drop"):
        return FAULT_DROP_WEBHOOK
    raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULT_NAMES)}")


class Faults:
    def __init__(self, config: EmulatorConfig) -> None:
        self._cfg = config
        self._rng = random.Random(config.seed)
        self._requests: deque[RequestFault] = deque()
        self._graphql_200 = 0
        self._fail_jobs = 0
        self._drop_webhooks = 0

    def inject(self, names: Iterable[str]) -> list[str]:
        """Queue faults (all or none: an unknown name raises ValueError). Returns their
        canonical names."""
        parsed = [parse_fault(n) for n in names]
        out: list[str] = []
        for fault in parsed:
            if isinstance(fault, RequestFault):
                self._requests.append(fault)
                out.append(fault.name)
            else:
                if fault == FAULT_GRAPHQL_200:
                    self._graphql_200 += 1
                elif fault == FAULT_FAIL_JOB:
                    self._fail_jobs += 1
                else:
                    self._drop_webhooks += 1
                out.append(fault)
        return out

    def clear(self) -> None:
        self._requests.clear()
        self._graphql_200 = self._fail_jobs = self._drop_webhooks = 0

    def pending(self) -> dict[str, object]:
        return {
            "requests": [f.name for f in self._requests],
            FAULT_GRAPHQL_200: self._graphql_200,
            FAULT_FAIL_JOB: self._fail_jobs,
            FAULT_DROP_WEBHOOK: self._drop_webhooks,
        }

    def next_request(self) -> RequestFault | None:
        """The fault for the request arriving now, if any."""
        if self._requests:
            return self._requests.popleft()
        cfg = self._cfg
        if cfg.error_rate and self._rng.random() < cfg.error_rate:
            return RequestFault(FAULT_500)
        if cfg.rate_limit_rate and self._rng.random() < cfg.rate_limit_rate:
            return RequestFault(FAULT_429)
        if cfg.slow_rate and self._rng.random() < cfg.slow_rate:
            return RequestFault(FAULT_SLOW, cfg.slow_seconds)
        return None

    def take_graphql_200(self) -> bool:
        if self._graphql_200:
            self._graphql_200 -= 1
            return True
        return False

    def next_job(self) -> JobFaults:
        """The faults of the job being created now."""
        cfg = self._cfg
        fail = drop = False
        if self._fail_jobs:
            self._fail_jobs -= 1
            fail = True
        elif cfg.job_fail_rate and self._rng.random() < cfg.job_fail_rate:
            fail = True
        if self._drop_webhooks:
            self._drop_webhooks -= 1
            drop = True
        elif cfg.drop_webhook_rate and self._rng.random() < cfg.drop_webhook_rate:
            drop = True
        return JobFaults(fail=fail, drop_webhook=drop)
