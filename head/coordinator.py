"""The job coordinator: jobs in, blocks out to whoever asks, results into SQLite.

Threads: paho's network thread only puts ``(topic, payload)`` on a bounded queue; the
thread that calls :meth:`Coordinator.run` owns the :class:`JobStore` and does everything
else. So SQLite has one user, and a slow commit never stalls the MQTT keepalive.

Work is pulled: a node publishes how many blocks it ``want``s; the coordinator remembers
that (one number per node, so the memory is bounded by the fleet) and leases blocks to it
as soon as there are any. A lease runs out after ``lease_seconds``; a node going offline
(its will, or a goodbye) gives its leases back at once. Results are acknowledged only
after they are committed, so a node that never saw an ack sends the result again and a
duplicate is harmless. Everything the coordinator knows is in SQLite: a restart, even
after ``kill -9``, carries on every unfinished job.
"""

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from head.janitor import SWEEP_EVERY_S, Janitor
from head.jobstore import JobStore
from head.life_jobs import LifeJobs
from head.lifestore import LifeStore
from head.tally import JobTally
from piswarm import __version__, protocol
from piswarm.inbox import DEFAULT_MAX_BYTES, Inbox
from piswarm.mqtt import (
    BrokerSettings,
    connect_async,
    end_loop,
    guarded,
    new_client,
    reason_text,
    unique_client_id,
)
from piswarm.protocol import ProtocolError, jobs, life, topics, work
from piswarm.protocol.health import Health, HealthClock

log = logging.getLogger(__name__)

SUBMIT_PREFIX = topics.JOBS_SUBMIT_FILTER.removesuffix("+")

MAX_RUNNING_JOBS = 100
"""Jobs (primes and Life together) the coordinator's own broker user may have running."""
SUBMITTER_QUOTA = 10
"""...and any other user (the viewer login every student shares): what it runs cannot
fill the head, and the admin always has its own MAX_RUNNING_JOBS left."""
MAX_WANTING_NODES = 10_000
REPUBLISH_ENDED = 10
"""Ended jobs (of each kind) whose retained status is published again after every connect:
the broker saves its state every few seconds (broker/config.py), so one that crashed
right after a job ended may have come back with that job's status from before."""


@dataclass
class CoordinatorStats:
    """Counters for operators and tests; written by the coordinator thread only (except
    ``dropped`` and ``callback_errors``, from paho's thread)."""

    jobs_submitted: int = 0
    requests_rejected: int = 0
    blocks_assigned: int = 0
    leases_released: int = 0
    results_stored: int = 0
    results_duplicate: int = 0
    results_rejected: int = 0
    malformed: int = 0
    errors: int = 0
    dropped: int = 0
    callback_errors: int = 0
    serves_held: int = 0  # blocks not leased while the broker was away (see _serve)


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
        client_id: str | None = None,
        stall_seconds: float = 30.0,
        sweep_every: float = SWEEP_EVERY_S,
    ) -> None:
        self.db_path = db_path
        self.settings = settings
        self.lease_seconds = lease_seconds
        self.status_interval = status_interval
        self.clock = clock
        self.client_id = client_id or unique_client_id("coordinator")
        self.stall_seconds = stall_seconds
        self.life: LifeJobs | None = None
        self.stats = CoordinatorStats()
        self.janitor = Janitor(settings, every=sweep_every)
        self.inbox: Inbox[tuple[str, bytes]] = Inbox(maxsize=queue_size, max_bytes=inbox_bytes)
        self.connected = threading.Event()
        self._reconnected = threading.Event()  # set by paho's thread, handled by run()
        self.ready = threading.Event()  # the store is open and running jobs are resumed
        self.fatal: str | None = None
        self._client: mqtt.Client | None = None
        self._wants: OrderedDict[str, int] = OrderedDict()
        self._tallies: dict[str, JobTally] = {}
        self._started = 0.0  # when run() began: leases running out before this + a lease
        self._reconciled: set[str] = set()  # nodes whose leases from before were checked
        self._maybe_work = True
        self._next_status = 0.0
        self._next_expiry_check = 0.0
        self._health = HealthClock()

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        client = new_client(self.client_id, self.settings)
        will = work.CoordinatorStatus(state="offline", ts=self.clock(), version=__version__)
        client.will_set(topics.JOBS_COORDINATOR, protocol.encode(will), qos=1, retain=True)
        client.on_connect = guarded("on_connect", self._count_callback_error)(self._on_connect)
        client.on_disconnect = guarded("on_disconnect", self._count_callback_error)(
            self._on_disconnect
        )
        client.on_message = guarded("on_message", self._count_callback_error)(self._on_message)
        self._client = client
        connect_async(client, self.settings)
        self.janitor.start()

    def close(self, timeout: float = 3.0) -> None:
        """Publish the retained ``offline`` and disconnect cleanly."""
        self.janitor.close()
        client, self._client = self._client, None
        if client is None:
            return
        if self.connected.is_set():
            goodbye = work.CoordinatorStatus(state="offline", ts=self.clock(), version=__version__)
            info = client.publish(
                topics.JOBS_COORDINATOR, protocol.encode(goodbye), qos=1, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                log.warning("coordinator offline status not confirmed: %s", exc)
        client.disconnect()
        end_loop(client)
        self.connected.clear()

    def run(self, stop: threading.Event) -> None:
        """Handle messages and keep time until ``stop`` is set (or another coordinator
        takes over the session). Opens, and closes, the job store in this thread."""
        store = JobStore(self.db_path).open()
        life_store = LifeStore(self.db_path).open()
        self.life = LifeJobs(store=life_store, publish=self._publish, clock=self.clock,
                             stall_seconds=self.stall_seconds)  # fmt: skip
        self._started = self.clock()
        try:
            self._resume(store)
            self.life.resume()
            self.ready.set()
            while not stop.is_set() and self.fatal is None:
                try:
                    first = self.inbox.get(timeout=0.1)
                except queue.Empty:
                    first = None
                if first is not None:
                    batch = [first]
                    for _ in range(1000):  # what else has arrived, before the timers
                        try:
                            batch.append(self.inbox.get_nowait())
                        except queue.Empty:
                            break
                    self._handle_batch(store, batch)
                self._tick(store)
        finally:
            store.close()
            life_store.close()
            self.ready.clear()

    def _resume(self, store: JobStore) -> None:
        for job in store.running_jobs():
            tally = self._tally_of(store, job)
            self._tallies[job] = tally
            log.info(
                "resuming job %s: %d/%d blocks done", job, tally.blocks_done, tally.info.blocks
            )
            self._publish_status(store, job)

    def _tally_of(self, store: JobStore, job: str) -> JobTally:
        now = self.clock()
        tally = JobTally(store.info(job))
        for block, node, count, last in store.contributions(job):
            tally.add(block, node, count, last, now)
        return tally

    def _republish_ended(self, store: JobStore) -> None:
        """The last ended jobs' final status and map, retained again (after a connect)."""
        for job in store.ended_jobs(REPUBLISH_ENDED):
            self._publish_tally(store, job, self._tally_of(store, job))
        self._life().republish_ended(REPUBLISH_ENDED)

    # -- the loop -------------------------------------------------------------------------

    def _handle_batch(self, store: JobStore, batch: list[tuple[str, bytes]]) -> None:
        """What has arrived together, in three passes, each in arrival order:

        1. requests, jobs and Life: each result costs a check and a commit, and a node
           waiting for its next block should not wait behind them;
        2. results;
        3. node statuses: a node's goodbye or will gives its leased blocks back, and the
           results it sent before it went (the broker delivers them first) must be stored
           by then, or their blocks would go to another node to compute again.
        """
        results, statuses = [], []
        for topic, payload in batch:
            if "/results/" in topic:
                results.append((topic, payload))
            elif topic.endswith("/status") and topic.startswith(topics.NODES_PREFIX):
                statuses.append((topic, payload))
            else:
                self._handle(store, topic, payload)
        for message in (*results, *statuses):
            self._handle(store, *message)

    def _handle(self, store: JobStore, topic: str, payload: bytes) -> None:
        """One message. A bad one is logged and counted; nothing escapes this boundary."""
        try:
            if topic.startswith(SUBMIT_PREFIX):
                self._on_submit(store, topics.parse_submit_topic(topic), payload)
            elif topic == topics.JOBS_CANCEL:
                self._on_cancel(store, payload)
            elif topic.endswith("/work/request"):
                self._on_request(store, topic, payload)
            elif "/results/" in topic:
                self._on_result(store, topic, payload)
            elif "/life/" in topic:
                self._life().on_strip_message(topic, payload)
            elif topic.endswith("/status"):
                self._on_node_status(store, topic, payload)
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("ignored malformed message on %s (%r): %s", topic, payload[:100], exc)
        except Exception:  # boundary: one bad message must not stop the coordinator
            self.stats.errors += 1
            log.exception("failed to handle a message on %s", topic)

    def _life(self) -> LifeJobs:
        if self.life is None:
            raise RuntimeError("the coordinator is not running")
        return self.life

    def _tick(self, store: JobStore) -> None:
        now = self.clock()
        self._publish_health(now)
        if self._reconnected.is_set():
            self._reconnected.clear()
            self._republish_ended(store)
        self._life().tick(now)
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + 1.0
            expiry = store.next_expiry()
            if expiry is not None and expiry < now:
                self._maybe_work = True
                self._serve(store)
        if now >= self._next_status:
            self._next_status = now + self.status_interval
            for job in list(self._tallies):
                self._tallies[job].sample(now)
                self._publish_status(store, job)
            self._life().publish_statuses()

    def health(self, now: float) -> Health:
        """The counters ``piswarm status --health`` shows for the coordinator."""
        stats = self.stats
        return Health(
            name=topics.COORDINATOR_NAME, process="coordinator", ts=now, started=self._started,
            malformed=stats.malformed,
            refused=stats.requests_rejected + stats.results_rejected + self.janitor.removed,
            dropped=stats.dropped,
            errors=stats.errors + stats.callback_errors + self.janitor.errors,
        )  # fmt: skip

    def _publish_health(self, now: float) -> None:
        health = self.health(now)
        if self.connected.is_set() and self._health.due(now, health.counters()):
            self._publish(topics.health(topics.COORDINATOR_NAME), protocol.encode(health),
                          qos=0, retain=True)  # fmt: skip

    # -- jobs ------------------------------------------------------------------------------

    def _reply(self, reply: jobs.JobReply) -> None:
        self._publish(topics.JOBS_REPLIES, protocol.encode(reply), qos=1)

    def quota(self, submitter: str) -> int:
        """How many jobs ``submitter`` may have running (primes and Life together)."""
        own = self.settings.credentials
        if own is not None and submitter == own.username:
            return MAX_RUNNING_JOBS
        return SUBMITTER_QUOTA

    def _on_submit(self, store: JobStore, submitter: str, payload: bytes) -> None:
        now = self.clock()
        try:
            request = jobs.decode_request(payload)
            job = self._submitted(store, submitter, request)
            if job is None:
                job = self._start(store, submitter, request, now)
        except ProtocolError as exc:
            self.stats.requests_rejected += 1
            log.warning("rejected job request from %s %r: %s", submitter, payload[:200], exc)
            self._reply(jobs.JobReply(request_id=jobs.request_id_of(payload), action="submit",
                                      ok=False, ts=now, error=str(exc)[:300]))  # fmt: skip
            return
        self._reply(jobs.JobReply(request_id=request.request_id, action="submit", ok=True,
                                  ts=now, job=job))  # fmt: skip

    def _submitted(
        self, store: JobStore, submitter: str, request: jobs.PrimesRequest | life.LifeRequest
    ) -> str | None:
        """The job this submitter already started for this request id (a retry), if any."""
        if isinstance(request, life.LifeRequest):
            return self._life().store.submitted(submitter, request.request_id)
        return store.submitted(submitter, request.request_id)

    def _start(
        self,
        store: JobStore,
        submitter: str,
        request: jobs.PrimesRequest | life.LifeRequest,
        now: float,
    ) -> str:
        """Start a new job within the submitter's quota; ProtocolError says why not."""
        running = store.running_count(submitter) + self._life().store.running_count(submitter)
        quota = self.quota(submitter)
        if running >= quota:
            raise ProtocolError(
                f"{submitter} has {running} jobs running, its limit is {quota}: wait for one to end"
            )
        if isinstance(request, life.LifeRequest):
            job, _ = self._life().submit(request, now, submitter=submitter)
            self.stats.jobs_submitted += 1
            return job
        job, _ = store.submit(request, now, submitter=submitter)
        self.stats.jobs_submitted += 1
        self._tallies[job] = JobTally(store.info(job))
        log.info(
            "job %s from %s: primes in [%d, %d], %d blocks of %d",
            job, submitter, request.start, request.end, request.blocks, request.block_size,
        )  # fmt: skip
        self._maybe_work = True
        self._publish_status(store, job)
        self._serve(store)
        return job

    def _on_cancel(self, store: JobStore, payload: bytes) -> None:
        now = self.clock()
        try:
            request = jobs.decode_cancel(payload)
            if request.job.startswith("l"):
                self._life().cancel(request.job, now)
                self._reply(jobs.JobReply(request_id=request.request_id, action="cancel",
                                          ok=True, ts=now, job=request.job))  # fmt: skip
                log.info("job %s cancelled", request.job)
                return
            store.cancel(request.job, now)
        except (ProtocolError, KeyError, ValueError) as exc:
            self.stats.requests_rejected += 1
            message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
            log.warning("rejected cancel request %r: %s", payload[:200], message)
            self._reply(jobs.JobReply(request_id=jobs.request_id_of(payload), action="cancel",
                                      ok=False, ts=now, error=message[:300]))  # fmt: skip
            return
        log.info("job %s cancelled", request.job)
        self._publish_status(store, request.job)
        self._reply(jobs.JobReply(request_id=request.request_id, action="cancel", ok=True,
                                  ts=now, job=request.job))  # fmt: skip

    def _publish_status(self, store: JobStore, job: str) -> None:
        tally = self._tallies.get(job)
        if tally is None:
            return
        if self._publish_tally(store, job, tally) != "running":
            del self._tallies[job]  # its final status is retained; nothing more to count

    def _publish_tally(self, store: JobStore, job: str, tally: JobTally) -> str:
        """Publish a job's status and map (retained); returns its state."""
        info = store.info(job)
        status = tally.status(info, self.clock())
        self._publish(topics.job_status(job), protocol.encode(status), qos=1, retain=True)
        self._publish(topics.job_map(job), jobs.encode_job_map(tally.job_map()), qos=0,
                      retain=True)  # fmt: skip
        return info.state

    # -- work ------------------------------------------------------------------------------

    def _on_request(self, store: JobStore, topic: str, payload: bytes) -> None:
        node = topics.parse_work_request_topic(topic)
        request = work.decode_work_request(payload)
        if request.node != node:
            raise ProtocolError(f"request names node {request.node!r}", topic=topic)
        self._wants.pop(node, None)
        if request.holding is not None and node not in self._reconciled:
            self._reconcile(store, node, request.held())
        if request.want > 0:
            if len(self._wants) >= MAX_WANTING_NODES:
                log.warning("%d nodes waiting for work: ignoring %s", len(self._wants), node)
                return
            self._wants[node] = request.want
            self._serve(store)

    def _reconcile(self, store: JobStore, node: str, held: set[tuple[str, int]]) -> None:
        """A node's first request since this coordinator started: leases it was given by
        the previous one and does not hold go back to the pool now, not when they run out
        (the old coordinator committed them, then died before the assignment went out)."""
        if len(self._reconciled) < MAX_WANTING_NODES:
            self._reconciled.add(node)
        released = store.release_orphans(node, held, self._started + self.lease_seconds)
        if released:
            self.stats.leases_released += released
            self._maybe_work = True
            log.info("%s: %d blocks leased before the restart never reached it", node, released)

    def _serve(self, store: JobStore) -> None:
        """Lease blocks to the nodes that want some, in turn, while there are any.

        Not while the broker is away: an assignment could not go out, and its block would
        sit leased to a node that never heard of it until the lease ran out. The nodes ask
        again when they are back, and the wants still remembered are served then."""
        if not self._maybe_work:
            return
        if not self.connected.is_set():
            self.stats.serves_held += 1
            return
        now = self.clock()
        for node, want in list(self._wants.items()):
            got = store.lease(node, now, self.lease_seconds, count=want)
            for a in got:
                assign = work.WorkAssign(job=a.job, block=a.block, lo=a.lo, hi=a.hi,
                                         lease_s=self.lease_seconds)  # fmt: skip
                self._publish(topics.node_work_assign(node), protocol.encode(assign), qos=1)
            self.stats.blocks_assigned += len(got)
            del self._wants[node]
            if len(got) < want:
                self._wants[node] = want - len(got)  # to the back of the line
                self._maybe_work = False
                return

    def _on_node_status(self, store: JobStore, topic: str, payload: bytes) -> None:
        if not payload:
            return  # a cleared retained status
        node, _leaf = topics.parse_node_topic(topic)
        status = protocol.decode_status(payload)
        if status.node != node:
            raise ProtocolError(f"a status of {status.node} on {node}'s topic", topic=topic)
        if isinstance(status, protocol.NodeOnline):
            self._life().node_online(node, status.life_strips)
        if isinstance(status, protocol.NodeOffline):
            self._life().node_offline(node)
            self._wants.pop(node, None)
            released = store.release_node(node)
            if released:
                self.stats.leases_released += released
                log.info("node %s went offline: %d blocks back in the pool", node, released)
                self._maybe_work = True
                self._serve(store)

    def _on_result(self, store: JobStore, topic: str, payload: bytes) -> None:
        node, job, block = topics.parse_result_topic(topic)
        now = self.clock()
        try:
            outcome = store.store_result(job, block, node, payload, now)
        except ProtocolError as exc:
            self.stats.results_rejected += 1
            log.warning("rejected result from %s for %s/%d: %s", node, job, block, exc)
            ack = work.ResultAck(job=job, block=block, outcome="rejected", error=str(exc)[:300])
            self._publish(topics.node_acks(node), protocol.encode(ack), qos=1)
            return
        if outcome == "stored":
            self.stats.results_stored += 1
            tally = self._tallies.get(job)
            if tally is not None:
                header = protocol.primes.read_header(payload)
                tally.add(block, node, header.count, header.last, now)
                if tally.blocks_done >= tally.info.blocks:
                    log.info("job %s done: %d primes", job, tally.primes)
                    self._publish_status(store, job)
        else:
            self.stats.results_duplicate += 1
            log.info("duplicate result from %s for %s/%d (already stored)", node, job, block)
        ack = work.ResultAck(job=job, block=block, outcome=outcome)
        self._publish(topics.node_acks(node), protocol.encode(ack), qos=1)

    # -- MQTT (paho's thread, except _publish) ----------------------------------------------

    def _publish(self, topic: str, payload: bytes, *, qos: int, retain: bool = False) -> None:
        client = self._client
        if client is None:
            return
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            log.warning("publish to %s not queued: %s", topic, mqtt.error_string(info.rc))

    def _count_callback_error(self) -> None:
        self.stats.callback_errors += 1

    def _on_connect(
        self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        if reason.is_failure:
            log.error("broker refused the coordinator: %s", reason_text(reason))
            return
        client.subscribe([
            (topics.JOBS_SUBMIT_FILTER, 1),
            (topics.JOBS_CANCEL, 1),
            (topics.NODE_STATUS_FILTER, 1),
            (topics.NODE_WORK_REQUEST_FILTER, 1),
            (topics.NODE_RESULT_FILTER, 1),
            (topics.LIFE_CHECKPOINT_FILTER, 1),
            (topics.LIFE_PROGRESS_FILTER, 0),
        ])  # fmt: skip
        # After the SUBSCRIBE on the same connection: nodes that answer 'online' with
        # requests and resent results find us listening.
        online = work.CoordinatorStatus(state="online", ts=self.clock(), version=__version__)
        client.publish(topics.JOBS_COORDINATOR, protocol.encode(online), qos=1, retain=True)
        self._reconnected.set()
        self.connected.set()
        log.info("coordinator online at %s:%d", self.settings.host, self.settings.port)

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _props: Any
    ) -> None:
        self.connected.clear()
        if self._client is not None:  # whatever the reason (0x8E too): paho reconnects
            log.warning("coordinator disconnected (%s); reconnecting", reason_text(reason))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, msg: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait((msg.topic, bytes(msg.payload)))
        except queue.Full:
            self.stats.dropped += 1
            if self.stats.dropped in (1, 10, 100) or self.stats.dropped % 1000 == 0:
                log.warning("coordinator inbox full: %d messages dropped", self.stats.dropped)
