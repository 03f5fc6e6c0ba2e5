"""Prime-search jobs on the coordinator: blocks leased to the nodes that want them, results
checked beside the loop and stored in batches, statuses published.

Owned by the coordinator's thread, like :class:`~head.coordinator.life_jobs.LifeJobs` beside it; the
coordinator routes each message here by its topic. Only the checks of a block's primes (a
CRC over every prime: milliseconds each, mostly outside the GIL) run in a pool of
threads, so that a node asking for its next block never waits behind them; a summary is
checked in the loop (microseconds):

1. :meth:`PrimeJobs.on_result` (one block) and :meth:`PrimeJobs.on_summaries` (several)
   claim each block in SQLite (is it owed by this node?) and check it or hand it to the
   pool;
2. :meth:`PrimeJobs.flush` takes every check that has finished, stores those results in
   one commit, and then acknowledges them, one message per node, job and outcome: an
   acknowledged result is on disk. A commit costs the same for one result as for a
   hundred.

Work is pulled: a node publishes how many blocks it ``want``s; the coordinator remembers
that (one number per node, so the memory is bounded by the fleet) and leases blocks to it
as soon as there are any, all the wants of a batch of messages in one commit. A lease
runs out after ``lease_seconds``; a node going offline (its will, or a goodbye) gives
its leases back at once. Everything is in SQLite: a restart, even after ``kill -9``,
carries on every unfinished job.

Two more things come from the nodes' requests and results. Each request says how fast the
node's workers sieve: a job that does not choose its block size gets blocks of about
``BLOCK_SECONDS`` (:meth:`PrimeJobs.block_size`). And a fraction of each job's blocks is
double-checked: leased again to a different node and compared (the job store decides,
names a node that was wrong, and ends a job only when its checks are decided).
"""

import dataclasses
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from head.coordinator.jobstore import Assignment, Checked, Claim, JobStore, Outcome
from head.coordinator.tally import JobTally
from piswarm import protocol
from piswarm.mqtt import Publish
from piswarm.protocol import ProtocolError, jobs, summary, topics, work
from piswarm.protocol.jobs import DEFAULT_DOUBLE_CHECK
from piswarm.protocol.placement import Placement
from piswarm.protocol.summary import BlockSummary

log = logging.getLogger(__name__)

MAX_WANTING_NODES = 10_000
MAX_CHECKING = 256
"""Results claimed and not yet stored: past this, the loop waits for the oldest check
and stores what is ready (the inbox, bounded, then holds what arrives). Summaries are
checked at once, in the loop; a block's primes in the pool."""
DEFAULT_CHECKERS = max(2, min(8, (os.cpu_count() or 2) - 1))
"""Threads checking results: a 1e7 block's CRC takes one ~2.5 ms, mostly outside the GIL,
so storing every prime scales with the head's cores (measured on 2 cores: ~94-136 MB/s
with 2)."""
BLOCK_SECONDS = 2.0
"""What a block should take a node: its result's overhead (a round trip, a commit, an
ack: ~1 ms all told) is then well under a percent of the node's time."""
HEAD_RESULTS_PER_S = 500
"""Results a second the sizing aims to keep the head at, however large the fleet (a
fraction of what it can take): past 1,000 workers, blocks grow beyond BLOCK_SECONDS."""
BLOCKS_PER_WORKER = 4
"""A job too small for blocks of BLOCK_SECONDS is cut so that each worker gets a few."""
SPEEDS_KEPT_S = 600.0
"""A node's reported speed counts for sizing this long after its last request."""


@dataclass
class PrimeStats:
    """Counters for operators and tests (the coordinator's thread writes them)."""

    jobs_submitted: int = 0
    blocks_assigned: int = 0
    leases_released: int = 0
    results_stored: int = 0
    results_duplicate: int = 0
    results_rejected: int = 0
    commits: int = 0  # of results: each holds one or more
    checks_assigned: int = 0  # blocks leased a second time, to another node, to compare
    checks_stored: int = 0  # their results
    serves_held: int = 0  # serves put off while the broker was away (see serve)


class PrimeJobs:
    """Prime jobs: call :meth:`resume` once the store is open, :meth:`close` at the end."""

    def __init__(
        self,
        *,
        store: JobStore,
        publish: Publish,
        clock: Callable[[], float],
        connected: Callable[[], bool],
        lease_seconds: float,
        started: float,
        stats: PrimeStats | None = None,
        checkers: int = DEFAULT_CHECKERS,
        double_check: float = DEFAULT_DOUBLE_CHECK,
    ) -> None:
        self.store = store
        self._publish = publish
        self.clock = clock
        self._connected = connected
        self.lease_seconds = lease_seconds
        self.double_check = double_check
        self._started = started  # leases running out before this + a lease are from before
        self.stats = stats if stats is not None else PrimeStats()
        self._pool = ThreadPoolExecutor(max(1, checkers), thread_name_prefix="check")
        self._checking: deque[tuple[Claim, Future[Checked]]] = deque()
        self._wants: OrderedDict[str, int] = OrderedDict()
        self._live: OrderedDict[str, int] = OrderedDict()
        """node -> workers, of the nodes online (their births): whom a placed job may wait for"""
        self._tallies: dict[str, JobTally] = {}
        self._reconciled: set[str] = set()  # nodes whose leases from before were checked
        self._speeds: OrderedDict[str, tuple[float, int, float]] = OrderedDict()
        self._retired_to = 0.0  # jobs that ended up to here are off the broker
        """node -> (numbers a second a worker sieves, workers, when it said so)"""
        self._maybe_work = True
        self._acks: dict[tuple[str, str, Outcome], list[int]] = {}
        """Stored and duplicate blocks to acknowledge, by node, job and outcome (sent by
        every :meth:`flush`: at most the results of one batch)."""
        self._refused: dict[tuple[str, str], dict[int, str]] = {}
        """...and refused ones, by node and job: block -> why."""

    def close(self) -> None:
        """Finish the checks under way and store them (their nodes are acknowledged)."""
        self.flush(wait=True)
        self._pool.shutdown(wait=True)

    # -- jobs ------------------------------------------------------------------------------

    def resume(self) -> None:
        for job in self.store.running_jobs():
            tally = self._tally_of(job)
            self._tallies[job] = tally
            log.info(
                "resuming job %s: %d/%d blocks done", job, tally.blocks_done, tally.info.blocks
            )
            self.publish_status(job)

    def _tally_of(self, job: str) -> JobTally:
        now = self.clock()
        tally = JobTally(self.store.info(job))
        for block, node, count in self.store.contributions(job):
            tally.add(block, node, count, now)
        return tally

    def retire_ended(self, keep: int, batch: int) -> int:
        """Remove from the broker the retained status and map of ended jobs older than
        the ``keep`` that ended last (their records stay in the database); at most
        ``batch`` at a time. Returns how many."""
        old = self.store.ended_beyond(keep, self._retired_to, batch)
        for job, finished in old:
            self._publish(topics.job_status(job), b"", qos=1, retain=True)
            self._publish(topics.job_map(job), b"", qos=1, retain=True)
            self._retired_to = max(self._retired_to, finished)
        return len(old)

    def republish_ended(self, limit: int) -> None:
        for job in self.store.ended_jobs(limit):
            self._publish_tally(job, self._tally_of(job))

    def block_size(self, request: jobs.PrimesRequest, now: float) -> int:
        """The block size for a job that does not choose one: what the nodes heard from
        in the last ``SPEEDS_KEPT_S`` sieve in ``BLOCK_SECONDS`` (their median worker),
        longer for a fleet that would otherwise send more than ``HEAD_RESULTS_PER_S``,
        shorter for a job too small to give every worker ``BLOCKS_PER_WORKER`` blocks;
        ``DEFAULT_BLOCK`` before any node has reported its speed."""
        recent = [
            (speed, workers)
            for speed, workers, seen in self._speeds.values()
            if now - seen <= SPEEDS_KEPT_S
        ]
        if not recent:
            size = jobs.DEFAULT_BLOCK
        else:
            speeds = sorted(speed for speed, _w in recent)
            workers = max(1, sum(w for _s, w in recent))
            seconds = max(BLOCK_SECONDS, workers / HEAD_RESULTS_PER_S)
            size = int(speeds[len(speeds) // 2] * seconds)
            size = min(size, (request.end - request.start + 1) // (BLOCKS_PER_WORKER * workers))
        size = max(jobs.MIN_BLOCK, min(size, jobs.max_block(request.keep)))
        return int(float(f"{size:.2g}"))  # 2 significant digits: blocks people can read

    def submit(self, request: jobs.PrimesRequest, now: float, submitter: str) -> str:
        if request.block_size is None:
            request = dataclasses.replace(request, block_size=self.block_size(request, now))
        job, _ = self.store.submit(
            request, now, submitter=submitter, double_check=self.double_check
        )
        self.stats.jobs_submitted += 1
        self._tallies[job] = JobTally(self.store.info(job))
        log.info(
            "job %s from %s: primes in [%d, %d], %d blocks of %d, keeping %s",
            job,
            submitter,
            request.start,
            request.end,
            request.blocks,
            request.size,
            request.keep,
        )
        self._maybe_work = True
        self.publish_status(job)
        self.serve()
        return job

    def cancel(self, job: str, now: float) -> None:
        self.store.cancel(job, now)
        self.publish_status(job)

    def publish_statuses(self, now: float) -> None:
        for job in list(self._tallies):
            self._tallies[job].sample(now)
            self.publish_status(job)

    def publish_status(self, job: str) -> None:
        tally = self._tallies.get(job)
        if tally is None:
            return
        if self._publish_tally(job, tally) != "running":
            del self._tallies[job]  # its final status is retained; nothing more to count

    def _publish_tally(self, job: str, tally: JobTally) -> str:
        """Publish a job's status and map (retained); returns its state."""
        info = self.store.info(job)
        status = tally.status(info, self.clock())
        if info.state == "running" and info.placement is not None:
            status = dataclasses.replace(status, waiting=self._waiting_for(info.placement))
        self._publish(topics.job_status(job), protocol.encode(status), qos=1, retain=True)
        self._publish(topics.job_map(job), jobs.encode_job_map(tally.job_map()), qos=0, retain=True)
        return info.state

    def _waiting_for(self, placement: Placement) -> str | None:
        """Why a placed job gets no work done, when no node online may compute it."""
        if any(workers and placement.admits(node) for node, workers in self._live.items()):
            return None
        return f"waiting: no node online with workers matches {placement.describe()}"[:300]

    # -- work ------------------------------------------------------------------------------

    def on_request(self, topic: str, payload: bytes) -> None:
        """A node's want (served by the next :meth:`serve`, with every other want)."""
        node = topics.parse_work_request_topic(topic)
        request = work.decode_work_request(payload)
        if request.node != node:
            raise ProtocolError(f"request names node {request.node!r}", topic=topic)
        self._wants.pop(node, None)
        if request.speed and request.workers:
            self._speeds.pop(node, None)
            if len(self._speeds) >= MAX_WANTING_NODES:
                self._speeds.popitem(last=False)  # the longest silent
            self._speeds[node] = (request.speed, request.workers, self.clock())
        if request.holding is not None and node not in self._reconciled:
            self._reconcile(node, request.held())
        if request.want > 0:
            if len(self._wants) >= MAX_WANTING_NODES:
                log.warning("%d nodes waiting for work: ignoring %s", len(self._wants), node)
                return
            self._wants[node] = request.want
            self._maybe_work = True

    def _reconcile(self, node: str, held: set[tuple[str, int]]) -> None:
        """A node's first request since this coordinator started: leases it was given by
        the previous one and does not hold go back to the pool now, not when they run out
        (the old coordinator committed them, then died before the assignment went out)."""
        if len(self._reconciled) < MAX_WANTING_NODES:
            self._reconciled.add(node)
        released = self.store.release_orphans(node, held, self._started + self.lease_seconds)
        if released:
            self.stats.leases_released += released
            self._maybe_work = True
            log.info("%s: %d blocks leased before the restart never reached it", node, released)

    def serve(self) -> None:
        """Lease blocks to the nodes that want some, in turn, while there are any (one
        commit for all of them).

        Not while the broker is away: an assignment could not go out, and its block would
        sit leased to a node that never heard of it until the lease ran out. The nodes ask
        again when they are back, and the wants still remembered are served then."""
        if not self._maybe_work or not self._wants:
            return
        if not self._connected():
            self.stats.serves_held += 1
            return
        wants = list(self._wants.items())
        served = self.store.lease_many(wants, self.clock(), self.lease_seconds)
        unmet = False
        for node, want in wants:
            if node not in served:
                break  # not tried: the pool ran dry before its turn
            got = served[node]
            by_job: dict[str, list[Assignment]] = {}
            for a in got:
                by_job.setdefault(a.job, []).append(a)
            for first, *more in by_job.values():  # one message per job (a want <= MAX_WANT)
                assign = work.WorkAssign(
                    job=first.job,
                    block=first.block,
                    lo=first.lo,
                    hi=first.hi,
                    lease_s=self.lease_seconds,
                    keep=first.keep,
                    more=tuple(work.BlockRange(a.block, a.lo, a.hi) for a in more),
                )
                self._publish(topics.node_work_assign(node), protocol.encode(assign), qos=1)
            self.stats.blocks_assigned += len(got)
            self.stats.checks_assigned += sum(a.check for a in got)
            del self._wants[node]
            if len(got) < want:
                self._wants[node] = want - len(got)  # to the back of the line
                unmet = True
        if unmet:
            self._maybe_work = False

    def tick(self, now: float) -> None:
        """Once a second: leases that ran out make work again; a check no other node
        took for two leases' time is given up (a room of one node cannot double-check)."""
        expiry = self.store.next_expiry()
        if expiry is not None and expiry < now:
            self._maybe_work = True
            self.serve()
        for job in self.store.waive_checks(now - 2 * self.lease_seconds, now):
            self.publish_status(job)

    def node_online(self, node: str, workers: int) -> None:
        """A node's birth: a placed job that names it no longer waits."""
        self._live.pop(node, None)
        if len(self._live) >= MAX_WANTING_NODES:
            self._live.popitem(last=False)  # the longest online
        self._live[node] = workers

    def node_offline(self, node: str) -> None:
        """A node's goodbye or will: its leases go back to the pool. Its results that
        arrived before are stored first (the broker delivers them before the will)."""
        self.flush(wait=True)
        self._wants.pop(node, None)
        self._live.pop(node, None)
        released = self.store.release_node(node)
        if released:
            self.stats.leases_released += released
            log.info("node %s went offline: %d blocks back in the pool", node, released)
            self._maybe_work = True
            self.serve()

    # -- results ---------------------------------------------------------------------------

    @property
    def checking(self) -> int:
        """Results handed to the checkers and not yet stored."""
        return len(self._checking)

    def on_result(self, topic: str, payload: bytes) -> None:
        """Claim a result and hand its payload to a checker (stored by :meth:`flush`)."""
        node, job, block = topics.parse_result_topic(topic)
        self._claim(node, job, block, payload)

    def on_summaries(self, topic: str, payload: bytes) -> None:
        """Several summaries of one job: each claimed, checked and acknowledged on its own."""
        node, job = topics.parse_summaries_topic(topic)
        batch = summary.decode_summaries(payload)
        for block, told in zip(batch.blocks, batch.summaries, strict=True):
            self._claim(node, job, block, told)

    def _claim(self, node: str, job: str, block: int, result: bytes | BlockSummary) -> None:
        try:
            claim = self.store.claim(job, block, node)
        except ProtocolError as exc:
            self._reject(node, job, block, str(exc))
            return
        if claim is None:
            self._duplicate(node, job, block)
            self._acks.setdefault((node, job, "duplicate"), []).append(block)
            return
        while len(self._checking) >= MAX_CHECKING:
            futures.wait([self._checking[0][1]])  # the oldest
            self.flush()
        if claim.keep == "primes" and isinstance(result, bytes):
            self._checking.append((claim, self._pool.submit(JobStore.check, claim, result)))
            return
        try:  # a summary is checked here: a pool's hand-off would cost more than the check
            if isinstance(result, BlockSummary):
                checked = JobStore.check_summary(claim, result)
            else:
                checked = JobStore.check(claim, result)
        except ProtocolError as exc:
            self._reject(node, job, block, str(exc))
            return
        done: Future[Checked] = Future()
        done.set_result(checked)  # stored in arrival order with those the pool checks
        self._checking.append((claim, done))

    def flush(self, *, wait: bool = False) -> int:
        """Store the results whose checks have finished (all of them with ``wait``), in
        order of arrival and in one commit, then acknowledge them. Returns how many."""
        ready: list[Checked] = []
        while self._checking and (wait or self._checking[0][1].done()):
            claim, future = self._checking.popleft()
            try:
                ready.append(future.result())
            except ProtocolError as exc:
                self._reject(claim.node, claim.job, claim.block, str(exc))
            except Exception:  # boundary: a check that breaks refuses one result, no more
                log.exception("checking %s/%d from %s failed", claim.job, claim.block, claim.node)
                self._reject(claim.node, claim.job, claim.block, "the result could not be checked")
        if not ready:
            self._send_acks()
            return 0
        now = self.clock()
        outcomes, ended = self.store.store_checked(ready, now)
        self.stats.commits += 1
        acks = self._acks
        for item, (outcome, error) in zip(ready, outcomes, strict=True):
            c = item.claim
            if outcome == "rejected":
                self._reject(c.node, c.job, c.block, error or "rejected")
                continue
            if outcome == "stored" and c.check:
                self.stats.checks_stored += 1
            elif outcome == "stored":
                self.stats.results_stored += 1
                tally = self._tallies.get(c.job)
                if tally is not None:
                    tally.add(c.block, c.node, item.summary.count, now)
            else:
                self._duplicate(c.node, c.job, c.block)
            acks.setdefault((c.node, c.job, outcome), []).append(c.block)
        if any(outcome == "stored" for outcome, _error in outcomes):
            # A stored result may have made work: a block to double-check, or (two that
            # disagree) one to compute a third time. The nodes already waiting are served
            # at once (:meth:`serve`, after this), not at their next ask (30 s later).
            self._maybe_work = True
        self._send_acks()
        for info in ended:
            log.info(
                "job %s done: %d primes, %d blocks double-checked",
                info.job,
                info.primes,
                info.checked,
            )
            self.publish_status(info.job)
        return len(ready)

    def _send_acks(self) -> None:
        """The acknowledgements gathered since the last: one message per node, job and
        outcome (up to ``1 + MAX_ACKED`` blocks each). Refused blocks carry the first
        one's reason (the log has each one's)."""
        acks, self._acks = self._acks, {}
        refused, self._refused = self._refused, {}
        for (node, job, outcome), blocks in acks.items():
            self._ack_blocks(node, job, outcome, blocks, None)
        for (node, job), why in refused.items():
            blocks = list(why)
            error = why[blocks[0]]
            if any(e != error for e in why.values()):
                error = f"{error} (and {len(blocks) - 1} more, each one's reason in the head's log)"
            self._ack_blocks(node, job, "rejected", blocks, error[:300])

    def _ack_blocks(
        self, node: str, job: str, outcome: Outcome, blocks: list[int], error: str | None
    ) -> None:
        for i in range(0, len(blocks), work.MAX_ACKED + 1):
            first, *more = blocks[i : i + work.MAX_ACKED + 1]
            ack = work.ResultAck(job, first, outcome, error, tuple(more))
            self._ack(node, ack)

    def _duplicate(self, node: str, job: str, block: int) -> None:
        self.stats.results_duplicate += 1
        log.info("duplicate result from %s for %s/%d (already stored)", node, job, block)

    def _reject(self, node: str, job: str, block: int, error: str) -> None:
        """Refuse a block (acknowledged with the others of its node and job)."""
        self.stats.results_rejected += 1
        log.warning("rejected result from %s for %s/%d: %s", node, job, block, error)
        self._refused.setdefault((node, job), {})[block] = error

    def _ack(self, node: str, ack: work.ResultAck) -> None:
        self._publish(topics.node_acks(node), protocol.encode(ack), qos=1)
