"""Talk to the coordinator from anywhere on the network: submit, cancel, read job status.

Requests go out on ``piswarm/jobs/submit`` / ``cancel`` with a fresh ``request_id`` and
the answer is the reply carrying it. Reading retained statuses needs to know when the
broker has delivered all of them: the client publishes a marker to its own
``piswarm/cli/<client>/sync`` topic after subscribing; messages on one connection arrive
in order, so when the marker is back every retained status is too.
"""

import contextlib
import logging
import queue
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from piswarm import protocol
from piswarm.errors import PiswarmError
from piswarm.mqtt import BrokerSettings, end_loop, guarded, new_client, reason_text
from piswarm.protocol import ProtocolError, jobs, life, topics, work

log = logging.getLogger(__name__)

Status = jobs.JobStatus | life.LifeStatus


class JobClientError(PiswarmError):
    """The broker or the coordinator could not be reached, or refused."""


class JobClient:
    """One short MQTT session (a context manager)."""

    def __init__(self, settings: BrokerSettings, *, connect_timeout: float = 10.0) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.client_id = f"piswarm-cli-{uuid.uuid4().hex[:8]}"
        self._client = new_client(self.client_id, settings)
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(maxsize=100_000)
        self._connected = threading.Event()
        self._subscribed: queue.Queue[list[ReasonCode]] = queue.Queue()
        self._refused: str | None = None
        self.sync_topic = f"{topics.ROOT}/cli/{self.client_id}/sync"

    def __enter__(self) -> "JobClient":
        c = self._client
        c.on_connect = guarded("on_connect")(self._on_connect)
        c.on_message = guarded("on_message")(self._on_message)
        c.on_subscribe = guarded("on_subscribe")(self._on_subscribe)
        c.reconnect_delay_set(1, 2)
        try:
            c.connect(self.settings.host, self.settings.port, keepalive=30)
        except OSError as exc:
            raise JobClientError(
                f"cannot reach the broker at {self.settings.host}:{self.settings.port}: {exc}"
            ) from None
        c.loop_start()
        if not self._connected.wait(self.connect_timeout):
            end_loop(c)
            why = self._refused or "no answer"
            raise JobClientError(
                f"cannot log in to the broker at {self.settings.host}:{self.settings.port}: {why}"
            )
        return self

    def __exit__(self, *_exc: object) -> None:
        self._client.disconnect()
        end_loop(self._client)

    # -- paho's thread -------------------------------------------------------------------

    def _on_connect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        if reason.is_failure:
            self._refused = reason_text(reason)
            return
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: Any, msg: mqtt.MQTTMessage) -> None:
        # A CLI reads far fewer; were it full, a snapshot would be incomplete, not wrong.
        with contextlib.suppress(queue.Full):
            self._inbox.put_nowait((msg.topic, bytes(msg.payload)))

    def _on_subscribe(self, _c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        self._subscribed.put(list(reasons))

    # -- requests --------------------------------------------------------------------------

    def _subscribe(self, *filters: str) -> None:
        self._client.subscribe([(f, 1) for f in filters])
        try:
            reasons = self._subscribed.get(timeout=self.connect_timeout)
        except queue.Empty:
            raise JobClientError("the broker did not answer a subscription") from None
        refused = [f for f, r in zip(filters, reasons, strict=False) if r.is_failure]
        if refused:
            raise JobClientError(f"the broker refused to let us read {refused[0]}")

    def _messages(self, timeout: float) -> Iterator[tuple[str, bytes]]:
        while True:
            try:
                yield self._inbox.get(timeout=timeout)
            except queue.Empty:
                return

    def _wait_for_coordinator(self, timeout: float) -> None:
        """Return once the coordinator's retained status says ``online`` (a request sent
        while it is down would be lost: nobody is subscribed)."""
        self._subscribe(topics.JOBS_COORDINATOR, self.sync_topic)
        self._client.publish(self.sync_topic, b"sync", qos=1)
        online, synced = False, False
        for msg_topic, payload in self._messages(timeout):
            if msg_topic == self.sync_topic:
                synced = True
            elif msg_topic == topics.JOBS_COORDINATOR:
                try:
                    online = work.decode_coordinator(payload).state == "online"
                except ProtocolError:
                    online = False
            if synced and online:
                return
            if synced and not online:
                log.info("the coordinator is offline: waiting up to %g s for it", timeout)
        raise JobClientError(
            f"the coordinator is not online (waited {timeout:g} s): start 'piswarm head'"
        )

    def request(self, topic: str, body: Any, *, timeout: float) -> jobs.JobReply:
        """Publish a submit/cancel and wait for the coordinator's reply to it."""
        self._wait_for_coordinator(timeout)
        self._subscribe(topics.JOBS_REPLIES)
        if isinstance(body, jobs.PrimesRequest | life.LifeRequest):
            payload = jobs.encode_request(body)
        else:
            payload = protocol.encode(body)
        info = self._client.publish(topic, payload, qos=1)
        info.wait_for_publish(timeout)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise JobClientError(f"could not publish to {topic}: {mqtt.error_string(info.rc)}")
        for msg_topic, payload in self._messages(timeout):
            if msg_topic != topics.JOBS_REPLIES:
                continue
            try:
                reply = jobs.decode_reply(payload)
            except ProtocolError:
                continue
            if reply.request_id == body.request_id:
                return reply
        raise JobClientError(
            f"no answer from the coordinator within {timeout:g} s: is 'piswarm head' running?"
        )

    def snapshot(self, status_filter: str = topics.JOB_STATUS_FILTER) -> list[Status]:
        """Every retained job status (or one job's), newest job first."""
        self._subscribe(status_filter, self.sync_topic)
        self._client.publish(self.sync_topic, b"sync", qos=1)
        found: dict[str, Status] = {}
        for topic, payload in self._messages(self.connect_timeout):
            if topic == self.sync_topic:
                return sorted(found.values(), key=lambda s: -s.created)
            try:
                status = jobs.decode_any_status(payload)
            except ProtocolError:
                continue
            found[status.job] = status
        raise JobClientError("the broker did not echo our marker: retained statuses unknown")

    def follow(
        self, job: str, on_status: Callable[[Status], None], *, idle_timeout: float
    ) -> Status:
        """Call ``on_status`` for each status of ``job`` until it is no longer running."""
        self._subscribe(topics.job_status(job))
        last: Status | None = None
        while True:
            got = next(self._messages(idle_timeout), None)
            if got is None:
                raise JobClientError(
                    f"no status of job {job} for {idle_timeout:g} s: is 'piswarm head' running?"
                )
            try:
                last = jobs.decode_any_status(got[1])
            except ProtocolError:
                continue
            on_status(last)
            if last.state != "running":
                return last
