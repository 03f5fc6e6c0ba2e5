"""The job coordinator: the router between the broker and the two kinds of jobs.

Threads: paho's network thread only puts ``(topic, payload)`` on a bounded queue; the
thread that calls :meth:`Coordinator.run` owns the stores and does everything else, so
SQLite has one user and a slow commit never stalls the MQTT keepalive. It takes what has
arrived in batches and routes each message by its topic's shape
(:func:`~piswarm.protocol.topics.coordinator_route`) to
:class:`~head.coordinator.prime_jobs.PrimeJobs` or
:class:`~head.coordinator.life_jobs.LifeJobs`; submits, cancels and the per-submitter quota
are its own. A bad message is logged and counted at this boundary, never more.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from head.coordinator.janitor import SWEEP_EVERY_S, Janitor
from head.coordinator.jobstore import JobStore
from head.coordinator.life_jobs import LifeJobs
from head.coordinator.lifestore import LifeStore
from head.coordinator.prime_jobs import DEFAULT_CHECKERS, PrimeJobs, PrimeStats
from piswarm import __version__, protocol
from piswarm.client import Message, MqttClient, Will
from piswarm.inbox import DEFAULT_MAX_BYTES
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, jobs, life, topics, work
from piswarm.protocol.health import Health, HealthClock
from piswarm.protocol.jobs import DEFAULT_DOUBLE_CHECK

log = logging.getLogger(__name__)

MAX_RUNNING_JOBS = 100
"""Jobs (primes and Life together) the coordinator's own broker user may have running."""
SUBMITTER_QUOTA = 10
"""...and any other user (the viewer login every student shares): what it runs cannot
fill the head, and the admin always has its own MAX_RUNNING_JOBS left."""
REPUBLISH_ENDED = 10
KEEP_ENDED = 20
"""Ended jobs (of each kind) whose retained status stays on the broker; older ones are
removed from it (their records stay in the database: ``piswarm job export``, ``verify``).
Kept all, a day of the demo's jobs left thousands retained and the broker grew with them
(183 statuses, 92 maps and 91 Life controls in 25 minutes of the soak benchmark)."""
RETIRE_EVERY = 10.0  # seconds between looks for ended jobs to take off the broker
RETIRE_BATCH = 200
"""Ended jobs (of each kind) whose retained status is published again after every connect:
the broker saves its state every few seconds (broker/config.py), so one that crashed
right after a job ended may have come back with that job's status from before."""


@dataclass
class CoordinatorStats:
    """The router's counters (prime work has its own: ``Coordinator.prime_stats``; its
    MQTT client its own: ``Coordinator.mqtt.stats``), written by the coordinator thread."""

    requests_rejected: int = 0
    malformed: int = 0
    errors: int = 0


SUBSCRIPTIONS = [
    (topics.JOBS_SUBMIT_FILTER, 1),
    (topics.JOBS_CANCEL, 1),
    (topics.NODE_STATUS_FILTER, 1),
    (topics.NODE_WORK_REQUEST_FILTER, 1),
    (topics.NODE_RESULT_FILTER, 1),
    (topics.LIFE_CHECKPOINT_FILTER, 1),
    (topics.LIFE_PROGRESS_FILTER, 0),
]


class Coordinator:
    """Run with :meth:`start` (connect), :meth:`run` (the loop, until ``stop``), :meth:`close`."""

    def __init__(
        self,
        *,
        db_path: Path,
        settings: BrokerSettings,
        lease_seconds: float = 60.0,
        status_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        queue_size: int = 10_000,
        inbox_bytes: int = DEFAULT_MAX_BYTES,
        stall_seconds: float = 30.0,
        sweep_every: float = SWEEP_EVERY_S,
        checkers: int = DEFAULT_CHECKERS,
        double_check: float = DEFAULT_DOUBLE_CHECK,
        keep_ended: int = KEEP_ENDED,
        retire_every: float = RETIRE_EVERY,
    ) -> None:
        self.db_path = db_path
        self.settings = settings
        self.lease_seconds = lease_seconds
        self.status_interval = status_interval
        self.clock = clock
        self.stall_seconds = stall_seconds
        self.checkers = checkers
        self.double_check = double_check
        self.keep_ended = keep_ended
        self.retire_every = retire_every
        self.life: LifeJobs | None = None
        self.primes: PrimeJobs | None = None
        self.stats = CoordinatorStats()
        self.prime_stats = PrimeStats()  # kept across runs of the loop
        self.janitor = Janitor(settings, every=sweep_every)
        self.mqtt = MqttClient(
            settings,
            role="coordinator",
            subscriptions=SUBSCRIPTIONS,
            inbox=queue_size,
            inbox_bytes=inbox_bytes,
            will=self._status("offline"),
            on_connect=self._on_connect,
            clock=clock,
            name="coordinator",
        )
        self.client_id = self.mqtt.client_id
        self.inbox = self.mqtt.inbox
        self.connected = self.mqtt.connected
        self._reconnected = threading.Event()  # set by paho's thread, handled by run()
        self.ready = threading.Event()  # the store is open and running jobs are resumed
        self.fatal: str | None = None
        self._started = 0.0  # when run() began
        self._next_tick = 0.0
        self._next_status = 0.0
        self._next_retire = 0.0
        self._health = HealthClock()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self.mqtt.start()
        self.janitor.start()

    def close(self, timeout: float = 3.0) -> None:
        """Publish the retained ``offline`` and disconnect cleanly."""
        self.janitor.close()
        self.mqtt.stop(goodbye=self._status("offline"), timeout=timeout)

    def _status(self, state: Literal["online", "offline"]) -> Will:
        status = work.CoordinatorStatus(state=state, ts=self.clock(), version=__version__)
        return Will(topics.JOBS_COORDINATOR, protocol.encode(status))

    def run(self, stop: threading.Event) -> None:
        """Handle messages and keep time until ``stop`` is set (or another coordinator
        takes over the session). Opens, and closes, the job stores in this thread."""
        store = JobStore(self.db_path).open()
        life_store = LifeStore(self.db_path).open()
        self._started = self.clock()
        self.life = LifeJobs(
            store=life_store,
            publish=self._publish,
            clock=self.clock,
            stall_seconds=self.stall_seconds,
        )
        self.primes = PrimeJobs(
            store=store,
            publish=self._publish,
            clock=self.clock,
            connected=self.connected.is_set,
            lease_seconds=self.lease_seconds,
            started=self._started,
            stats=self.prime_stats,
            checkers=self.checkers,
            double_check=self.double_check,
        )
        try:
            self.primes.resume()
            self.life.resume()
            self.ready.set()
            while not stop.is_set() and self.fatal is None:
                # Results being checked: come back for them soon.
                first = self.mqtt.get(0.005 if self.primes.checking else 0.1)
                if first is not None:
                    # What else has arrived, before the timers.
                    self._handle_batch([first, *self.mqtt.drain(1000)])
                self._guarded("storing results", self.primes.flush)
                # What those results made (a check, a third computation) goes out now.
                self._guarded("serving work", self._prime().serve)
                self._tick()
        finally:
            self._guarded("storing the last results", self.primes.close)
            store.close()
            life_store.close()
            self.ready.clear()

    def _guarded(self, what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception:  # boundary: the loop goes on (the nodes resend what is unacked)
            self.stats.errors += 1
            log.exception("coordinator: %s failed", what)

    def _retire_ended(self) -> None:
        self._prime().retire_ended(self.keep_ended, RETIRE_BATCH)
        self._life().retire_ended(self.keep_ended, RETIRE_BATCH)

    def _republish_ended(self) -> None:
        """The last ended jobs' final status and map, retained again (after a connect)."""
        self._prime().republish_ended(REPUBLISH_ENDED)
        self._life().republish_ended(REPUBLISH_ENDED)

    # -- the loop -------------------------------------------------------------------------

    def _handle_batch(self, batch: list[Message]) -> None:
        """What has arrived together, in passes, each in arrival order:

        1. submits, cancels, work requests and Life; then the wants are served, all in
           one commit: a node waiting for its next block does not wait behind results;
        2. results, each claimed and handed to a checker;
        3. node statuses: a node's goodbye or will gives its leased blocks back, and the
           results it sent before it went (the broker delivers them first) are stored by
           then, or their blocks would go to another node to compute again.
        """
        results: list[tuple[str, bytes, topics.Route]] = []
        statuses: list[tuple[str, bytes, topics.Route]] = []
        for topic, payload, _at, _retained in batch:
            route = topics.coordinator_route(topic)
            if route in ("result", "summaries"):
                results.append((topic, payload, route))
            elif route == "node_status":
                statuses.append((topic, payload, route))
            else:
                self._handle(topic, payload, route)
        self._guarded("serving work", self._prime().serve)
        for message in (*results, *statuses):
            self._handle(*message)

    def _handle(self, topic: str, payload: bytes, route: topics.Route) -> None:
        """One message. A bad one is logged and counted; nothing escapes this boundary."""
        try:
            if route == "submit":
                self._on_submit(topics.parse_submit_topic(topic), payload)
            elif route == "cancel":
                self._on_cancel(payload)
            elif route == "work_request":
                self._prime().on_request(topic, payload)
            elif route == "result":
                self._prime().on_result(topic, payload)
            elif route == "summaries":
                self._prime().on_summaries(topic, payload)
            elif route == "life":
                self._life().on_strip_message(topic, payload)
            elif route == "node_status":
                self._on_node_status(topic, payload)
            else:
                raise ProtocolError("not a topic the coordinator reads", topic=topic)
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("ignored malformed message on %s (%r): %s", topic, payload[:100], exc)
        except Exception:  # boundary: one bad message must not stop the coordinator
            self.stats.errors += 1
            log.exception("failed to handle a message on %s", topic)

    def _prime(self) -> PrimeJobs:
        if self.primes is None:
            raise RuntimeError("the coordinator is not running")
        return self.primes

    def _life(self) -> LifeJobs:
        if self.life is None:
            raise RuntimeError("the coordinator is not running")
        return self.life

    def _tick(self) -> None:
        now = self.clock()
        self._publish_health(now)
        if self._reconnected.is_set():
            self._reconnected.clear()
            self._guarded("republishing ended jobs", self._republish_ended)
        self._life().tick(now)
        if now >= self._next_tick:
            self._next_tick = now + 1.0
            self._guarded("leasing again", lambda: self._prime().tick(now))
        if now >= self._next_retire:
            self._next_retire = now + self.retire_every
            self._guarded("retiring ended jobs", self._retire_ended)
        if now >= self._next_status:
            self._next_status = now + self.status_interval
            self._guarded("publishing statuses", lambda: self._prime().publish_statuses(now))
            self._life().publish_statuses()

    def health(self, now: float) -> Health:
        """The counters ``piswarm status --health`` shows for the coordinator."""
        stats = self.stats
        rejected = self.prime_stats.results_rejected
        return Health(
            name=topics.COORDINATOR_NAME,
            process="coordinator",
            ts=now,
            started=self._started,
            malformed=stats.malformed,
            refused=stats.requests_rejected + rejected + self.janitor.removed,
            dropped=self.mqtt.stats.dropped,
            errors=stats.errors + self.mqtt.stats.callback_errors + self.janitor.errors,
        )

    def _publish_health(self, now: float) -> None:
        health = self.health(now)
        if self.connected.is_set() and self._health.due(now, health.counters()):
            self._publish(
                topics.health(topics.COORDINATOR_NAME), protocol.encode(health), qos=0, retain=True
            )

    # -- jobs ------------------------------------------------------------------------------

    def _reply(self, reply: jobs.JobReply) -> None:
        self._publish(topics.JOBS_REPLIES, protocol.encode(reply), qos=1)

    def quota(self, submitter: str) -> int:
        """How many jobs ``submitter`` may have running (primes and Life together)."""
        own = self.settings.credentials
        if own is not None and submitter == own.username:
            return MAX_RUNNING_JOBS
        return SUBMITTER_QUOTA

    def _on_submit(self, submitter: str, payload: bytes) -> None:
        now = self.clock()
        try:
            request = jobs.decode_request(payload)
            job = self._submitted(submitter, request)
            if job is None:
                job = self._start(submitter, request, now)
        except ProtocolError as exc:
            self.stats.requests_rejected += 1
            log.warning("rejected job request from %s %r: %s", submitter, payload[:200], exc)
            self._reply(
                jobs.JobReply(
                    request_id=jobs.request_id_of(payload),
                    action="submit",
                    ok=False,
                    ts=now,
                    error=str(exc)[:300],
                )
            )
            return
        self._reply(
            jobs.JobReply(request_id=request.request_id, action="submit", ok=True, ts=now, job=job)
        )

    def _submitted(
        self, submitter: str, request: jobs.PrimesRequest | life.LifeRequest
    ) -> str | None:
        """The job this submitter already started for this request id (a retry), if any."""
        if isinstance(request, life.LifeRequest):
            return self._life().store.submitted(submitter, request.request_id)
        return self._prime().store.submitted(submitter, request.request_id)

    def _start(
        self, submitter: str, request: jobs.PrimesRequest | life.LifeRequest, now: float
    ) -> str:
        """Start a new job within the submitter's quota; ProtocolError says why not."""
        running = sum(
            store.running_count(submitter) for store in (self._prime().store, self._life().store)
        )
        quota = self.quota(submitter)
        if running >= quota:
            raise ProtocolError(
                f"{submitter} has {running} jobs running, its limit is {quota}: wait for one to end"
            )
        if isinstance(request, life.LifeRequest):
            job, _ = self._life().submit(request, now, submitter=submitter)
            return job
        return self._prime().submit(request, now, submitter)

    def _on_cancel(self, payload: bytes) -> None:
        now = self.clock()
        try:
            request = jobs.decode_cancel(payload)
            if self._life().store.has(request.job):  # the kind is the store's, not the id's
                self._life().cancel(request.job, now)
            else:
                self._prime().cancel(request.job, now)
        except (ProtocolError, KeyError, ValueError) as exc:
            self.stats.requests_rejected += 1
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            log.warning("rejected cancel request %r: %s", payload[:200], message)
            self._reply(
                jobs.JobReply(
                    request_id=jobs.request_id_of(payload),
                    action="cancel",
                    ok=False,
                    ts=now,
                    error=message[:300],
                )
            )
            return
        log.info("job %s cancelled", request.job)
        self._reply(
            jobs.JobReply(
                request_id=request.request_id, action="cancel", ok=True, ts=now, job=request.job
            )
        )

    def _on_node_status(self, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained status
        node, _leaf = topics.parse_node_topic(topic)
        status = protocol.decode_status(payload)
        if status.node != node:
            raise ProtocolError(f"a status of {status.node} on {node}'s topic", topic=topic)
        if isinstance(status, protocol.NodeOnline):
            self._life().node_online(node, status.life_strips)
            self._prime().node_online(node, status.workers)
        if isinstance(status, protocol.NodeOffline):
            self._life().node_offline(node)
            self._prime().node_offline(node)

    # -- MQTT ----------------------------------------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        self.mqtt.publish(topic, payload, qos=qos, retain=retain)

    def _on_connect(self) -> None:
        """paho's thread, after the subscriptions went out on the same connection: nodes
        that answer 'online' with requests and resent results find us listening."""
        self.mqtt.publish(
            topics.JOBS_COORDINATOR, self._status("online").payload, qos=1, retain=True
        )
        self._reconnected.set()
        log.info("coordinator online at %s:%d", self.settings.host, self.settings.port)
