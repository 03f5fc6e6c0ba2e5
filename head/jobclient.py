"""Talk to the coordinator from anywhere on the network: submit, cancel, read job status.

Requests go out on ``piswarm/jobs/submit/<user>`` / ``piswarm/jobs/cancel`` with a fresh
``request_id`` and the answer is the reply carrying it. Retained statuses are read as a
:class:`~head.session.Session` reads them: up to its sync marker.
"""

import logging
import time
from collections.abc import Callable
from typing import Any

from head.session import Session, SessionError
from piswarm import protocol
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, jobs, life, topics, work

log = logging.getLogger(__name__)

Status = jobs.JobStatus | life.LifeStatus


class JobClient(Session):
    """One short MQTT session with the coordinator (a context manager)."""

    def __init__(self, settings: BrokerSettings, *, connect_timeout: float = 10.0) -> None:
        super().__init__(settings, connect_timeout=connect_timeout, role="cli")

    def __enter__(self) -> "JobClient":
        super().__enter__()
        return self

    def _wait_for_coordinator(self, timeout: float) -> None:
        """Return once the coordinator's retained status says ``online`` (a request sent
        while it is down would be lost: nobody is subscribed)."""
        statuses = self.retained(topics.JOBS_COORDINATOR)
        if _online(statuses):
            return
        log.info("the coordinator is offline: waiting up to %g s for it", timeout)
        deadline = time.monotonic() + timeout
        for msg in self.messages(timeout, until=deadline):
            if msg[0] == topics.JOBS_COORDINATOR and _online([msg]):
                return
        raise SessionError(
            f"the coordinator is not online (waited {timeout:g} s): start 'piswarm head'"
        )

    def submit(
        self, request: jobs.PrimesRequest | life.LifeRequest, *, timeout: float
    ) -> jobs.JobReply:
        """Submit a job as this session's broker user (the broker takes a submit only on
        the user's own topic) and wait for the coordinator's reply."""
        credentials = self.settings.credentials
        if credentials is None:
            raise SessionError("submitting a job needs broker credentials (--credentials)")
        try:
            topic = topics.jobs_submit(credentials.username)
        except ProtocolError as exc:
            raise SessionError(f"cannot submit as this broker user: {exc}") from None
        return self.request(topic, request, timeout=timeout)

    def request(self, topic: str, body: Any, *, timeout: float) -> jobs.JobReply:
        """Publish a submit/cancel and wait for the coordinator's reply to it."""
        self._wait_for_coordinator(timeout)
        self.subscribe(topics.JOBS_REPLIES)
        if isinstance(body, jobs.PrimesRequest | life.LifeRequest):
            payload = jobs.encode_request(body)
        else:
            payload = protocol.encode(body)
        self.publish(topic, payload, timeout=timeout)
        for msg_topic, payload in self.messages(timeout):
            if msg_topic != topics.JOBS_REPLIES:
                continue
            try:
                reply = jobs.decode_reply(payload)
            except ProtocolError:
                continue
            if reply.request_id == body.request_id:
                return reply
        raise SessionError(
            f"no answer from the coordinator within {timeout:g} s: is 'piswarm head' running?"
        )

    def snapshot(self, status_filter: str = topics.JOB_STATUS_FILTER) -> list[Status]:
        """Every retained job status (or one job's), newest job first."""
        found: dict[str, Status] = {}
        for _topic, payload in self.retained(status_filter):
            try:
                status = jobs.decode_any_status(payload)
            except ProtocolError:
                continue
            found[status.job] = status
        return sorted(found.values(), key=lambda s: -s.created)

    def follow(
        self, job: str, on_status: Callable[[Status], None], *, idle_timeout: float
    ) -> Status:
        """Call ``on_status`` for each status of ``job`` until it is no longer running."""
        self.subscribe(topics.job_status(job))
        last: Status | None = None
        while True:
            got = next(self.messages(idle_timeout), None)
            if got is None:
                raise SessionError(
                    f"no status of job {job} for {idle_timeout:g} s: is 'piswarm head' running?"
                )
            try:
                last = jobs.decode_any_status(got[1])
            except ProtocolError:
                continue
            on_status(last)
            if last.state != "running":
                return last


def _online(messages: list[tuple[str, bytes]]) -> bool:
    """Whether the last of these coordinator statuses says ``online``."""
    for _topic, payload in reversed(messages):
        try:
            return work.decode_coordinator(payload).state == "online"
        except ProtocolError:
            return False
    return False
