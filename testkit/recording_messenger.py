"""A Messenger that records what the delivery rules decided (the Discord side is tested via the fake)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bot.i18n import Message, render
from bot.jobs import Job
from bot.pipeline.delivery import Attachment, Posted, Route, RouteUnavailable, UploadTooLarge


@dataclass
class Sent:
    job_id: str
    route: Route
    text: str
    attachment: Attachment | None


@dataclass
class RecordingMessenger:
    limits: dict[Route, int | None] = field(
        default_factory=lambda: {
            Route.INTERACTION: 10 * 1024 * 1024,
            Route.CHANNEL: 10 * 1024 * 1024,
            Route.DM: None,
        }
    )
    unavailable: set[Route] = field(default_factory=set)
    refuse_over: int | None = None  # answer 413 for files above this size
    sent: list[Sent] = field(default_factory=list)
    statuses: list[tuple[str, str, str]] = field(default_factory=list)
    alerts: list[tuple[int | None, str]] = field(default_factory=list)
    history_hidden: bool = False  # find_sent cannot tell (no history permission)
    crash_after_send: bool = False  # the process "dies" right after the message went out
    gates: dict[str, asyncio.Event] = field(default_factory=dict)  # a job's send waits for its gate

    def upload_limit(self, job: Job, route: Route) -> int | None:
        return self.limits.get(route)

    async def send(self, job: Job, route: Route, text: str, attachment: Attachment | None) -> Posted | None:
        if route in self.unavailable:
            raise RouteUnavailable("test: route down")
        if (
            attachment is not None
            and self.refuse_over is not None
            and len(attachment.data) > self.refuse_over
        ):
            raise UploadTooLarge
        if job.id in self.gates:  # a slow upload, held until the test lets it go
            await self.gates[job.id].wait()
        self.sent.append(Sent(job.id, route, text, attachment))
        if self.crash_after_send:
            raise RuntimeError("test: crashed after sending, before recording the delivery")
        return Posted(job.channel_id or 0, len(self.sent))

    async def show_status(self, job: Job, detail: Message) -> None:
        # As the card shows it: in the job's language.
        self.statuses.append((job.id, job.state.value, render(detail, job.locale)))

    async def alert(self, channel_id: int | None, text: Message) -> None:
        self.alerts.append((channel_id, render(text)))

    async def find_sent(self, job: Job, since: float) -> bool | None:
        if self.history_hidden:
            return None
        return any(s.job_id == job.id for s in self.sent)

    def owns_card(self, job: Job) -> bool:
        return True  # one process: every card is this one's
