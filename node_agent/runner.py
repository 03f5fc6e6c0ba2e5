"""The node's work: ask for blocks, sieve them in worker processes, deliver the results.

A :class:`WorkRunner` rides on an :class:`~node_agent.agent.Agent`: the agent forwards the
runner's topics to it and ticks it from the driver loop. Threads stay apart:

- paho's thread (``on_message``) and the pool's callback thread only record what happened
  (an assignment, an ack, a finished block) under a lock and wake the driver;
- the driver thread (:meth:`tick`) decides: starts blocks, publishes results, resends,
  asks for more work. Sieving happens in other *processes*, so the MQTT loop stays
  responsive however long a block takes.

Delivery is at-least-once: each result is kept until the coordinator acknowledges it
(after its commit) and sent again after a reconnect, when the coordinator comes (back)
online, or after ``resend_after`` seconds without an ack. While too many results wait
for acks the runner asks for no new work, so memory stays bounded.

Capacity is counted in *slots*. A real node has ``workers + 2`` of its own (two blocks
wait ready while the others compute, so a worker never idles for a round trip); a
simulated fleet shares a few slots between all its nodes, so they take turns on the
machine's real cores.
"""

import functools
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from piswarm.heap import keep_heap_memory
from piswarm.sieve_backends import BackendName

if TYPE_CHECKING:
    import numpy as np

    from piswarm.sieve_backends import SieveBackend
from piswarm import protocol
from piswarm.children import ignore_stop_signals, stop_signals_held, watch_parent
from piswarm.protocol import ProtocolError, topics, work
from piswarm.protocol.summary import (
    MAX_SUMMARIES,
    Summaries,
    decode_summary,
    encode_summaries,
    is_summary,
)

log = logging.getLogger(__name__)

Publish = Callable[[str, bytes, int], Any]
_T = TypeVar("_T")


@functools.cache
def _worker_backend(name: str) -> "SieveBackend":
    """The sieve of this worker process, made once: it keeps its base primes from block
    to block (making them again cost 6% of a 1e7 block near 1e12: 195 vs 184 ms)."""
    from piswarm.sieve_backends import select_backend

    return select_backend(cast(BackendName, name))


MAX_WAITING = 256
"""Assigned blocks a node keeps waiting for a worker: far more than it ever asks for
(its slots), so only a coordinator gone wrong, or someone else writing to its assign
topic, fills it; what comes past it is dropped, counted and logged."""
LIST_AT_ONCE = 100_000_000
"""Numbers listed at a time for a count-only block (at most ~46 MB of primes in memory)."""


def compute_block(
    lo: int,
    hi: int,
    backend: str,
    keep: str = "primes",
    piece: int = LIST_AT_ONCE,
    fault: str = "",
) -> bytes:
    """The result of ``[lo, hi)``: its encoded primes, or their summary when the job
    keeps counts only (listed ``piece`` numbers at a time). What a worker process runs;
    numpy is imported here, in the worker, not by the agent's main process. ``fault``
    ``drop-prime`` (tests only: :data:`node_agent.config.FAULT_ENV`) lies."""
    from piswarm.protocol.counts import summarize_chunks
    from piswarm.protocol.primes import encode_primes
    from piswarm.protocol.summary import encode_summary

    sieve = _worker_backend(backend)
    lie = fault == "drop-prime"

    def listed(a: int, b: int) -> "np.ndarray":
        primes = sieve.primes(a, b)
        if lie and primes.size > 2:
            primes = primes[primes != primes[primes.size // 2]]  # wrong on purpose (tests)
        return primes

    if keep == "counts":
        pieces = (listed(a, min(hi, a + piece)) for a in range(lo, hi, piece))
        return encode_summary(summarize_chunks(pieces))
    return encode_primes(listed(lo, hi))


def timed_block(lo: int, hi: int, backend: str, keep: str, fault: str = "") -> tuple[bytes, float]:
    """:func:`compute_block` and the seconds it took (the node's speed, for the head)."""
    started = time.perf_counter()
    result = compute_block(lo, hi, backend, keep, fault=fault)
    return result, time.perf_counter() - started


def warm_up(backend: str) -> None:
    """Load the sieve in a worker before its first block (numpy's import alone takes a
    Pi's core a second or more)."""
    _worker_backend(backend)


def _start_worker(parent: int) -> None:
    """A worker process's setup: Ctrl-C and SIGTERM are for the agent, which stops its
    workers itself; it dies with the agent; and it keeps its freed memory (a block's
    arrays are the size of the last block's; faulting them in again each time cost a
    third of the worker's time)."""
    ignore_stop_signals()
    watch_parent(parent, signal.SIGKILL)
    if not keep_heap_memory():
        log.info("no glibc mallopt here: each block's arrays are faulted in anew")


class Slots:
    """A count of blocks that may be held at once, shared by the runners given it.

    Shared by a simulated fleet, it takes turns: a runner that finds no free slot queues
    up (once) and is called when one comes back; a slot goes to the first in the queue,
    so a node that just finished a block cannot take the slot back ahead of the others.
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ValueError("at least one slot")
        self.total = total
        self._free = total
        self._waiting: OrderedDict[str, Callable[[], None]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, who: str, notify: Callable[[], None]) -> bool:
        with self._lock:
            first = next(iter(self._waiting), who)
            if self._free > 0 and first == who:
                self._waiting.pop(who, None)
                self._free -= 1
                return True
            self._waiting.setdefault(who, notify)
            return False

    def give(self) -> None:
        with self._lock:
            self._free = min(self.total, self._free + 1)
            first = next(iter(self._waiting.values()), None)
        if first is not None:
            first()

    def withdraw(self, who: str) -> None:
        """``who`` no longer waits (it disconnected or stops)."""
        with self._lock:
            self._waiting.pop(who, None)


class Workers:
    """A process pool that is rebuilt if a worker dies (one pool may serve many runners).

    Workers ignore the signals that stop the agent (:mod:`piswarm.children`):
    :meth:`shutdown` lets each finish the block it is on. Killing one while it writes its
    result would leave the pool waiting forever for the rest of it.
    """

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError("at least one worker")
        self.count = count
        self._lock = threading.Lock()
        self._pool: ProcessPoolExecutor | None = None

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: forking a process that runs paho's threads could copy a held lock, and
        # workers of a forkserver outlive a killed agent. Spawned workers are our children
        # and watch this *process*: PDEATHSIG would kill them when the thread that happened
        # to submit ends, and a worker killed while writing its result hangs the pool.
        return ProcessPoolExecutor(
            self.count,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker,
            initargs=(os.getpid(),),
        )

    def start(self, backend: str) -> None:
        """Start every worker now and load ``backend`` in it, so that the first blocks
        do not wait for that."""
        for _ in range(self.count):
            self._submit(warm_up, backend)

    def submit(self, lo: int, hi: int, backend: str, keep: str = "primes") -> "Future[bytes]":
        return self._submit(compute_block, lo, hi, backend, keep)

    def submit_timed(
        self, lo: int, hi: int, backend: str, keep: str, fault: str = ""
    ) -> "Future[tuple[bytes, float]]":
        """:meth:`submit`, with the seconds the worker spent on it."""
        return self._submit(timed_block, lo, hi, backend, keep, fault)

    def _submit(self, fn: Callable[..., _T], *args: Any) -> "Future[_T]":
        with self._lock, stop_signals_held():  # the pool may start a worker here
            if self._pool is None:
                self._pool = self._new_pool()
            try:
                return self._pool.submit(fn, *args)
            except BrokenProcessPool:
                log.warning("a worker process died: starting a new pool")
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                return self._pool.submit(fn, *args)

    def shutdown(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class RunnerStats:
    blocks_done: int = 0
    blocks_failed: int = 0
    results_sent: int = 0
    resends: int = 0
    acks: int = 0
    rejected: int = 0  # acks saying the coordinator refused the result
    requests_sent: int = 0
    malformed: int = 0
    assigns_dropped: int = 0  # blocks assigned past MAX_WAITING (never asked for)
    busy_s: float = 0.0  # seconds the workers spent on blocks, all together


@dataclass
class _Unacked:
    job: str
    block: int
    payload: bytes
    sent_at: float


class WorkRunner:
    """Blocks for one node. No I/O until the agent connects."""

    def __init__(
        self,
        *,
        node_id: str,
        workers: Workers,
        slots: Slots,
        per_node: int,
        backend: str,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        resend_after: float = 60.0,
        rerequest_every: float = 30.0,
        max_unacked: int = 16,
        fault: str = "",
    ) -> None:
        self.node_id = topics.validate_node_id(node_id)
        self.fault = fault
        if fault:
            log.warning(
                "%s: test fault %r: this node's results are wrong on purpose", node_id, fault
            )
        self.workers = workers
        self.slots = slots
        self.per_node = per_node
        self.backend = backend
        self.clock = clock
        self.wall_clock = wall_clock
        self.resend_after = resend_after
        self.rerequest_every = rerequest_every
        self.max_unacked = max_unacked
        self.stats = RunnerStats()
        self.wake: Callable[[], None] = lambda: None
        self.assign_topic = topics.node_work_assign(node_id)
        self.acks_topic = topics.node_acks(node_id)
        self._request_topic = topics.node_work_request(node_id)
        self._lock = threading.Lock()
        # Written by paho's or the pool's thread, read by the driver (under the lock):
        self._assigned: deque[work.WorkAssign] = deque()  # at most MAX_WAITING
        self._finished: deque[tuple[work.WorkAssign, Future[tuple[bytes, float]]]] = deque()
        self._unacked: OrderedDict[tuple[str, int], _Unacked] = OrderedDict()
        self._resend_all = False
        self._events = False
        # The driver's own:
        self._held = 0  # slots held
        self._running = 0  # blocks submitted to the pool and not yet finished
        self._computing: set[tuple[str, int]] = set()  # those blocks
        self._promised = 0  # blocks the coordinator still owes us (our last want, minus assigns)
        self.speed: float | None = None  # numbers a second a worker sieves, recently
        self._last_request = -1e18
        self._coordinator_online = False

    # -- from paho's thread ------------------------------------------------------------------

    def subscriptions(self) -> list[tuple[str, int]]:
        return [(self.assign_topic, 1), (self.acks_topic, 1), (topics.JOBS_COORDINATOR, 1)]

    def on_connect(self) -> None:
        """A (re)connect: results in flight may be lost, the coordinator must hear from us."""
        with self._lock:
            self._resend_all = True
            self._events = True
            self._last_request = -1e18
        self.wake()

    def handles(self, topic: str) -> bool:
        return topic in (self.assign_topic, self.acks_topic, topics.JOBS_COORDINATOR)

    def on_message(self, topic: str, payload: bytes) -> None:
        try:
            if topic == self.assign_topic:
                assigned = work.decode_assign(payload).each()
                with self._lock:
                    room = MAX_WAITING - len(self._assigned)
                    self._assigned.extend(assigned[: max(0, room)])
                    self._events = True
                dropped = len(assigned) - max(0, room)
                if dropped > 0:  # far more than we asked for: its lease runs out instead
                    self.stats.assigns_dropped += dropped
                    log.warning(
                        "%s: %d blocks of %s assigned past %d waiting: dropped",
                        self.node_id,
                        dropped,
                        assigned[0].job,
                        MAX_WAITING,
                    )
            elif topic == self.acks_topic:
                self._on_ack(work.decode_ack(payload))
            elif topic == topics.JOBS_COORDINATOR:
                if not payload:
                    return
                status = work.decode_coordinator(payload)
                with self._lock:
                    came_online = status.state == "online" and not self._coordinator_online
                    self._coordinator_online = status.state == "online"
                    if came_online:  # (again): it may have missed our results and requests
                        self._resend_all = True
                        self._last_request = -1e18
                        self._events = True
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning("%s: ignored bad message on %s: %s", self.node_id, topic, exc)
            return
        self.wake()

    def _on_ack(self, ack: work.ResultAck) -> None:
        with self._lock:
            entries = [self._unacked.pop((ack.job, block), None) for block in ack.blocks]
            self._events = True
        acked = sum(entry is not None for entry in entries)  # none: a resend acked before
        self.stats.acks += acked
        if acked and ack.outcome == "rejected":
            self.stats.rejected += acked
            log.warning(
                "%s: coordinator rejected block %s/%d: %s",
                self.node_id,
                ack.job,
                ack.block,
                ack.error,
            )

    def _done(self, assign: work.WorkAssign, future: "Future[tuple[bytes, float]]") -> None:
        """The pool's callback thread: hand the finished block to the driver."""
        with self._lock:
            self._finished.append((assign, future))
            self._events = True
        self.wake()

    # -- the driver's side ---------------------------------------------------------------------

    @property
    def wants_tick(self) -> bool:
        return self._events

    @property
    def unacked(self) -> int:
        with self._lock:
            return len(self._unacked)

    @property
    def ready(self) -> int:
        """Blocks computed and not yet taken by the driver (sent at its next tick)."""
        with self._lock:
            return len(self._finished)

    @property
    def busy(self) -> int:
        """Blocks held: assigned and waiting, or computing."""
        with self._lock:
            return len(self._assigned) + self._running

    def tick(self, now: float, publish: Publish | None) -> float:
        """Do what is due; return when the runner next needs a tick (``clock`` time).
        ``publish`` is None while the agent is disconnected."""
        with self._lock:
            self._events = False
            finished = list(self._finished)
            self._finished.clear()
            assigned = list(self._assigned)
            self._assigned.clear()
            resend_all, self._resend_all = self._resend_all, False
        results = [r for a, f in finished if (r := self._finish(a, f, now)) is not None]
        if publish is not None:
            self._send(results, publish)
            self.stats.results_sent += len(results)
        for assign in assigned:
            self._promised = max(0, self._promised - 1)
            self._start(assign)
        if publish is not None:
            self._resend(now, publish, everything=resend_all)
            self._request(now, publish)
        else:
            self.slots.withdraw(self.node_id)  # do not hold up the line while offline
        return now + min(self.rerequest_every, self.resend_after)

    def _start(self, assign: work.WorkAssign) -> None:
        future = self.workers.submit_timed(
            assign.lo, assign.hi, self.backend, assign.keep, self.fault
        )
        self._running += 1
        self._computing.add((assign.job, assign.block))
        future.add_done_callback(functools.partial(self._done, assign))

    def _finish(
        self, assign: work.WorkAssign, future: "Future[tuple[bytes, float]]", now: float
    ) -> _Unacked | None:
        """A finished block: its result, kept until acknowledged (None: it failed)."""
        self._running -= 1
        self._computing.discard((assign.job, assign.block))
        if self._held > self._running:  # a finished block frees its slot for someone
            self._held -= 1
            self.slots.give()
        try:
            payload, seconds = future.result()
        except BrokenProcessPool:
            self.stats.blocks_failed += 1
            log.warning(
                "%s: a worker died on %s/%d: computing it again",
                self.node_id,
                assign.job,
                assign.block,
            )
            self._start(assign)
            return None
        except Exception:  # boundary: a failed block must not stop the node
            self.stats.blocks_failed += 1
            log.exception("%s: block %s/%d failed", self.node_id, assign.job, assign.block)
            return None
        self.stats.blocks_done += 1
        self.stats.busy_s += seconds
        speed = (assign.hi - assign.lo) / max(seconds, 1e-6)
        self.speed = speed if self.speed is None else 0.7 * self.speed + 0.3 * speed
        result = _Unacked(assign.job, assign.block, payload, now)
        with self._lock:
            self._unacked[(assign.job, assign.block)] = result
        return result

    def _resend(self, now: float, publish: Publish, *, everything: bool) -> None:
        with self._lock:
            due = [
                u
                for u in self._unacked.values()
                if everything or now - u.sent_at >= self.resend_after
            ]
            for entry in due:
                entry.sent_at = now
        self._send(due, publish)
        self.stats.resends += len(due)

    def _send(self, results: list[_Unacked], publish: Publish) -> None:
        """Publish results: summaries of one job that are ready together go in one
        message (up to ``MAX_SUMMARIES``); a block's primes, or a lone summary, alone."""
        summaries: dict[str, list[_Unacked]] = {}
        for r in results:
            if is_summary(r.payload):
                summaries.setdefault(r.job, []).append(r)
            else:
                publish(topics.node_result(self.node_id, r.job, r.block), r.payload, 1)
        for job, ready in summaries.items():
            for i in range(0, len(ready), MAX_SUMMARIES):
                part = ready[i : i + MAX_SUMMARIES]
                if len(part) == 1:
                    only = part[0]
                    publish(topics.node_result(self.node_id, job, only.block), only.payload, 1)
                    continue
                batch = Summaries(
                    blocks=tuple(r.block for r in part),
                    summaries=tuple(decode_summary(r.payload) for r in part),
                )
                publish(topics.node_summaries(self.node_id, job), encode_summaries(batch), 1)

    def _request(self, now: float, publish: Publish) -> None:
        if self.unacked < self.max_unacked:
            while self._held < self.per_node and self.slots.take(self.node_id, self._slot_free):
                self._held += 1
        want = 0 if self.unacked >= self.max_unacked else max(0, self._held - self.busy)
        stale = want > 0 and now - self._last_request >= self.rerequest_every
        if want == self._promised and not stale:
            return
        request = work.WorkRequest(
            node=self.node_id,
            want=min(want, work.MAX_WANT),
            ts=self.wall_clock(),
            backend=self.backend,
            holding=self._holding(),
            speed=None if self.speed is None else round(min(self.speed, 1e13)),
            workers=min(self.per_node, self.workers.count, work.MAX_WORKERS),
        )
        publish(self._request_topic, protocol.encode(request), 1)
        self.stats.requests_sent += 1
        self._promised = want
        self._last_request = now

    def _holding(self) -> tuple[str, ...]:
        """The blocks this node has: assigned, computing, or computed and not yet
        acknowledged."""
        with self._lock:
            held = self._computing | set(self._unacked)
            held.update((a.job, a.block) for a in self._assigned)
        return work.WorkRequest.holding_of(held)

    def _slot_free(self) -> None:
        """A slot came back and we are first in line (any thread)."""
        with self._lock:
            self._events = True
        self.wake()

    def release(self) -> None:
        """Give back every slot held (the node is stopping)."""
        self.slots.withdraw(self.node_id)
        while self._held > 0:
            self._held -= 1
            self.slots.give()
