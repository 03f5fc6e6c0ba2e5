"""The coordinator's side of distributed Life: partition, watch, re-partition, finish.

Called only from the coordinator's thread (it owns the :class:`LifeStore`). A job runs
in *epochs*: an epoch is one layout of strips over live nodes, started from the job's
latest whole board. A node going offline (after ``regroup_seconds``, so that nodes coming
back together, as after a broker restart, all take part), a stall (no strip moving on for
``stall_seconds``) or a coordinator restart (once the nodes have had ``settle_seconds``
to announce themselves) starts a new epoch from the last complete checkpoint; the
retained control topic tells the old strips to stop. Checkpoint pieces from any but the
current epoch are ignored, so the final board is exactly what one process would have
computed.
"""

import logging
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from head.coordinator.life_board import initial_board, split_rows
from head.coordinator.lifestore import Board, LifeStore, Strip
from piswarm import protocol
from piswarm.fleet import MAX_ROOM_NODES
from piswarm.life import population
from piswarm.mqtt import Publish
from piswarm.protocol import ProtocolError, life, topics
from piswarm.protocol.placement import Placement

log = logging.getLogger(__name__)

MAX_NODES = MAX_ROOM_NODES
MIN_STRIP_ROWS = 8
SPEED_SMOOTHING = 0.3  # weight of a new speed report against what a node showed before


@dataclass
class _Running:
    """What the coordinator tracks of a running job in memory (rebuilt on restart)."""

    epoch: int
    last_heard: float
    progress: dict[int, int]  # strip -> generation reached
    board_gen: int
    population: int
    rate: float = 0.0
    rate_mark: tuple[float, int] = (0.0, 0)
    needs_epoch: bool = False
    resumed: bool = False  # from SQLite after a restart: its strips' news since is lost
    epoch_due: float = 0.0  # a wanted new epoch waits until then for nodes to regroup
    slots: dict[str, int] = field(default_factory=dict)  # node -> strips it runs for this job
    owners: dict[int, str] = field(default_factory=dict)  # strip -> the node that runs it
    heard: dict[int, float] = field(default_factory=dict)  # strip -> its last word, when
    benched: set[str] = field(default_factory=set)  # silent nodes, senders of conflicting halos
    waiting: str | None = None  # why no strip runs (no node free, none the placement names)

    @property
    def strips(self) -> int:
        return sum(self.slots.values())

    @property
    def nodes(self) -> tuple[str, ...]:
        """The epoch's nodes, top strip's first."""
        return tuple(self.slots)


class LifeJobs:
    def __init__(
        self,
        *,
        store: LifeStore,
        publish: Publish,
        clock: Callable[[], float],
        stall_seconds: float = 30.0,
        settle_seconds: float = 1.0,
        regroup_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.publish = publish
        self.clock = clock
        self.stall_seconds = stall_seconds
        self.settle_seconds = settle_seconds
        self.regroup_seconds = regroup_seconds
        self.nodes: OrderedDict[str, int] = OrderedDict()  # live node -> strips it runs
        # node -> cell updates a second one of its strips computes (smoothed); kept for
        # nodes that went away too (they come back), at most MAX_NODES of them
        self.speeds: OrderedDict[str, float] = OrderedDict()
        self.running: dict[str, _Running] = {}
        self._retired_to = 0.0  # jobs that ended up to here are off the broker
        self.stale = 0
        self.repartitions = 0
        self.conflicts = 0  # halo conflicts acted on
        self._started = clock()

    # -- jobs -----------------------------------------------------------------------------

    def resume(self) -> None:
        now = self.clock()
        for job in self.store.running():
            record, (gen, population, _hash) = self.store.get(job), self.store.summary(job)
            layout = self.store.layout(job, record.epoch)
            self.running[job] = _Running(
                epoch=record.epoch,
                last_heard=now,
                progress={},
                board_gen=gen,
                population=population,
                needs_epoch=not layout,
                resumed=True,
                slots=Counter(s.node for s in layout),
                owners={s.strip: s.node for s in layout},
            )
            log.info("resuming Life job %s from generation %d (epoch %d)", job, gen, record.epoch)

    def submit(
        self, request: life.LifeRequest, now: float, *, submitter: str = ""
    ) -> tuple[str, bool]:
        board = initial_board(request)  # ProtocolError: a bad or misplaced pattern
        job, new = self.store.submit(request, board, now, submitter=submitter)
        if new:
            log.info(
                "Life job %s: %d x %d, %d generations (%s)",
                job,
                request.width,
                request.height,
                request.gens,
                request.wrap,
            )
            self.running[job] = _Running(
                epoch=0,
                last_heard=now,
                progress={},
                board_gen=0,
                population=population(board),
                needs_epoch=True,
            )
            self._start_epoch(job)
        return job, new

    def cancel(self, job: str, now: float) -> None:
        record = self.store.get(job)  # KeyError: unknown
        if record.state != "running":
            raise ValueError(f"job {job} is already {record.state}")
        self.store.finish(job, "cancelled", now)
        self._control(job, record.epoch, "cancelled")
        self.publish_status(job)
        self.running.pop(job, None)
        self._wake_waiting()

    # -- nodes ------------------------------------------------------------------------------

    def node_online(self, node: str, strips: int) -> None:
        self.nodes.pop(node, None)
        if strips > 0 and len(self.nodes) < MAX_NODES:
            self.nodes[node] = strips
        self._wake_waiting()

    def node_offline(self, node: str) -> None:
        self.nodes.pop(node, None)
        for job, run in self.running.items():
            if node in run.nodes and not run.needs_epoch:
                log.info(
                    "Life job %s: node %s is gone, re-partitioning from generation %d in %g s",
                    job,
                    node,
                    run.board_gen,
                    self.regroup_seconds,
                )
                self._regroup(run)

    def _wake_waiting(self) -> None:
        """Jobs waiting for nodes or free strip slots try again (after the regroup pause)."""
        for run in self.running.values():
            if run.strips == 0 and not run.needs_epoch:
                self._regroup(run)

    def _regroup(self, run: _Running) -> None:
        """A new epoch, after a moment: nodes that come and go together (a broker restart
        sends every node's will, then they all reconnect) are all in it."""
        run.needs_epoch = True
        run.epoch_due = self.clock() + self.regroup_seconds

    # -- messages from strips -------------------------------------------------------------------

    def on_strip_message(self, topic: str, payload: bytes) -> None:
        node, job, epoch, strip, leaf = topics.parse_life_strip_topic(topic)
        run = self.running.get(job)
        if run is None or epoch != run.epoch:
            self.stale += 1
            return
        if run.owners.get(strip) != node:  # a node may speak for its own strips only
            raise ProtocolError(f"node {node} does not run strip {strip}", topic=topic)
        run.heard[strip] = self.clock()
        if leaf == "progress":
            progress = life.decode_progress(payload)
            if (progress.job, progress.epoch, progress.strip) != (job, epoch, strip):
                raise ProtocolError("progress does not match its topic", topic=topic)
            if progress.gen > run.progress.get(strip, -1):
                run.last_heard = self.clock()  # only moving on counts: a stuck strip still talks
            run.progress[strip] = max(run.progress.get(strip, 0), progress.gen)
            if progress.cells_per_s:
                self._note_speed(node, progress.cells_per_s)
            if progress.conflict_gen is not None and progress.conflict_node is not None:
                self._on_conflict(job, run, node, progress.conflict_gen, progress.conflict_node)
        elif leaf == "checkpoint":
            self._on_checkpoint(node, job, run, strip, payload, topic)

    def _on_checkpoint(
        self, node: str, job: str, run: _Running, strip: int, payload: bytes, topic: str
    ) -> None:
        layout = {s.strip: s for s in self.store.layout(job, run.epoch)}
        expected = layout.get(strip)
        request = self.store.get(job).request

        def the_strips_own(header: life.Checkpoint) -> None:
            """Before anything is inflated: the sender runs this strip, and the rows fit
            the board (neighbours move boundaries as they balance their speeds;
            add_piece checks that a generation's pieces tile the board)."""
            if (
                expected is None
                or expected.node != node
                or (header.job, header.epoch, header.strip) != (job, run.epoch, strip)
                or header.width != request.width
                or header.row0 + header.rows > request.height
            ):
                raise ProtocolError("checkpoint does not match the strip's layout", topic=topic)

        header, raw = life.decode_checkpoint(payload, check=the_strips_own)
        run.last_heard = self.clock()
        run.progress[strip] = max(run.progress.get(strip, 0), header.gen)
        board = self.store.add_piece(
            job, run.epoch, header.gen, strip, header.row0, raw, run.strips
        )
        if board is None:
            return
        run.board_gen, run.population = board.gen, board.population
        if board.gen >= request.gens:
            self._done(job, run, board)

    def _on_conflict(self, job: str, run: _Running, reporter: str, gen: int, sender: str) -> None:
        """A strip got two different halos for generation ``gen`` on ``sender``'s topic
        (only ``sender``'s login can write there): one is forged, and the board may be
        wrong after ``gen``. The sender takes no part in the job any more, and the job
        goes back to its last board, if that is of generation ``gen`` or earlier; if it is
        later, the job fails (never a silently wrong board)."""
        if sender in run.benched:
            return  # handled: its strips' reports repeat it until the new epoch starts
        if sender not in run.owners.values():
            raise ProtocolError(f"a conflict named {sender}, which runs no strip of {job}")
        self.conflicts += 1
        run.benched.add(sender)
        if run.board_gen > gen:  # a board of generation gen was computed without them
            error = (
                f"{sender} sent two different halos for generation {gen} (seen by "
                f"{reporter}); the last board kept is from generation {run.board_gen}, "
                "so the board cannot be trusted: submit the job again"
            )
            log.warning("Life job %s failed: %s", job, error)
            self.store.finish(job, "failed", self.clock(), error=error)
            self._control(job, run.epoch, "failed")
            self.publish_status(job)
            del self.running[job]
            self._wake_waiting()
            return
        log.warning(
            "Life job %s: %s sent two different halos for generation %d (seen by %s): "
            "it takes no part in this job any more; going back to generation %d",
            job,
            sender,
            gen,
            reporter,
            run.board_gen,
        )
        run.needs_epoch = True
        self._start_epoch(job)

    def _done(self, job: str, run: _Running, board: Board) -> None:
        self.store.finish(job, "done", self.clock())
        log.info(
            "Life job %s done: generation %d, %d cells, hash %s",
            job,
            board.gen,
            board.population,
            board.hash,
        )
        self._control(job, run.epoch, "done")
        self.publish_status(job)
        del self.running[job]
        self._wake_waiting()

    # -- time ---------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        for job, run in list(self.running.items()):
            if run.needs_epoch:
                self._start_epoch(job)
            elif (
                run.strips
                and now - self._started >= self.settle_seconds
                and (run.resumed or any(node not in self.nodes for node in run.nodes))
            ):
                # Resumed: checkpoints sent while no coordinator listened are gone, and the
                # strips may have finished meanwhile. Either way: start again from the last
                # one stored, over the nodes online now (checkpoint_every gens at most redone).
                why = "resumed" if run.resumed else f"a node of epoch {run.epoch} is not online"
                log.info(
                    "Life job %s: %s, re-partitioning from generation %d", job, why, run.board_gen
                )
                run.needs_epoch = True
                self._start_epoch(job)
            elif (
                run.strips
                and now - run.last_heard > self.stall_seconds
                and now - run.last_heard > self._stall_limit(job)
            ):
                log.warning(
                    "Life job %s: no strip has moved on for %.0f s, re-partitioning",
                    job,
                    now - run.last_heard,
                )
                self._bench_the_silent(job, run, now)
                run.needs_epoch = True
                self._start_epoch(job)

    def _bench_the_silent(self, job: str, run: _Running, now: float) -> None:
        """A stall: the nodes whose strips have said nothing for ``stall_seconds`` (a
        strip waiting for its neighbours still reports) take no part in the job's next
        epochs. A node that announces strips it never runs, or a frozen one, would
        otherwise be given a strip again at every re-partition, for as long as it stays.
        When every strip is silent nobody is to blame (the network, or the broker)."""
        silent = {
            run.owners[strip]
            for strip in run.owners
            if now - run.heard.get(strip, run.last_heard) > self.stall_seconds
        }
        if silent and silent != set(run.owners.values()):
            run.benched |= silent
            log.warning(
                "Life job %s: strips of %s said nothing for %.0f s: they take no part "
                "in this job any more",
                job,
                ", ".join(sorted(silent)),
                self.stall_seconds,
            )

    def _stall_limit(self, job: str) -> float:
        """How long no strip may advance: ``stall_seconds``, plus a paced round's length."""
        request = self.store.get(job).request
        if request.pace <= 0:
            return self.stall_seconds
        return (
            self.stall_seconds
            + life.round_depth(request.halo, request.pace, 1 << 30) / request.pace
        )

    def publish_statuses(self) -> None:
        for job in list(self.running):
            self.publish_status(job)

    # -- epochs -----------------------------------------------------------------------------

    def _note_speed(self, node: str, cells_per_s: float) -> None:
        old = self.speeds.pop(node, None)
        self.speeds[node] = (
            cells_per_s if old is None else old + SPEED_SMOOTHING * (cells_per_s - old)
        )
        while len(self.speeds) > MAX_NODES:
            self.speeds.popitem(last=False)

    def _weights(self, nodes: list[str]) -> list[float]:
        """Each strip's share: its node's measured speed; a node not yet measured counts
        as the median of those that are (all equal when none is)."""
        known = sorted(self.speeds[n] for n in set(nodes) if n in self.speeds)
        typical = known[len(known) // 2] if known else 1.0
        return [self.speeds.get(n, typical) for n in nodes]

    def _free_slots(self, job: str, placement: Placement | None) -> dict[str, int]:
        """Strips each live node can still take: its slots less other running jobs' strips
        (none for a node benched from this job), on the nodes the job's placement names,
        at most ``per_node`` each, on at most ``count`` nodes (those with the most free
        slots, the first to come online of equals)."""
        benched = self.running[job].benched if job in self.running else set()
        free = {node: n for node, n in self.nodes.items() if node not in benched}
        if placement is not None:
            free = {node: n for node, n in free.items() if placement.admits(node)}
        for other, run in self.running.items():
            if other != job:
                for node, used in run.slots.items():
                    if node in free:
                        free[node] -= used
        free = {node: n for node, n in free.items() if n > 0}
        if placement is not None and placement.per_node is not None:
            free = {node: min(n, placement.per_node) for node, n in free.items()}
        if placement is not None and placement.count is not None:  # those with most room
            free = dict(sorted(free.items(), key=lambda kv: -kv[1])[: placement.count])
        return free

    def _layout(self, request: life.LifeRequest, free: dict[str, int]) -> list[Strip]:
        min_rows = max(MIN_STRIP_ROWS, request.halo)
        slots = [node for node, strips in free.items() for _ in range(strips)]
        # round-robin over nodes first, so a small board spreads over many nodes
        order = sorted(range(len(slots)), key=lambda i: (slots[:i].count(slots[i]), i))
        count = max(1, min(len(slots), request.height // min_rows, life.MAX_STRIPS))
        chosen = sorted((slots[i] for i in order[:count]), key=list(free).index)
        runs = split_rows(request.height, self._weights(chosen), min(min_rows, request.height))
        return [
            Strip(strip=i, node=node, row0=row0, rows=rows)
            for i, (node, (row0, rows)) in enumerate(zip(chosen, runs, strict=True))
        ]

    def _start_epoch(self, job: str) -> None:
        run = self.running[job]
        if not run.needs_epoch:
            return
        if self.clock() - self._started < self.settle_seconds or self.clock() < run.epoch_due:
            return  # the births of live nodes are still arriving
        record = self.store.get(job)
        request = record.request
        free = self._free_slots(job, request.placement)
        if not free:
            if run.strips:
                self._control(job, record.epoch, "running")
            run.slots = {}
            why = "other Life jobs use every strip slot" if self.nodes else "no node runs strips"
            placement = request.placement
            if placement is not None and not any(map(placement.admits, self.nodes)):
                why = f"no node online that runs strips matches {placement.describe()}"
            if run.benched:
                why += (
                    f" (none for {', '.join(sorted(run.benched))}: their strips went "
                    "silent or sent conflicting halos)"
                )
            log.info("Life job %s waits: %s", job, why)
            run.needs_epoch = False
            run.waiting = f"waiting: {why}"[:300]
            return
        board = self.store.board(job)
        layout = self._layout(request, free)
        epoch = self.store.new_epoch(job, layout, board.gen)
        halo = min(request.halo, min(s.rows for s in layout))
        self._control(job, epoch, "running")  # strips of older epochs stop
        n = len(layout)
        for s in layout:
            above = below = None
            if n > 1 or request.wrap == "torus":
                if s.strip > 0 or request.wrap == "torus":
                    up = layout[(s.strip - 1) % n]
                    above = life.StripRef(node=up.node, strip=up.strip)
                if s.strip < n - 1 or request.wrap == "torus":
                    down = layout[(s.strip + 1) % n]
                    below = life.StripRef(node=down.node, strip=down.strip)
            assign = life.StripAssign(
                job=job,
                epoch=epoch,
                strip=s.strip,
                strips=n,
                row0=s.row0,
                rows=s.rows,
                width=request.width,
                height=request.height,
                wrap=request.wrap,
                gen=board.gen,
                gens=request.gens,
                halo=halo,
                frame_every=request.frame_every,
                checkpoint_every=request.checkpoint_every,
                above=above,
                below=below,
                pace=request.pace,
            )
            strip_rows = board.cells[s.row0 : s.row0 + s.rows].astype("<u8").tobytes()
            self.publish(
                topics.node_life_assign(s.node), life.encode_assign(assign, strip_rows), qos=1
            )
        if record.epoch > 0:
            self.repartitions += 1
        now = self.clock()
        self.running[job] = _Running(
            epoch=epoch,
            last_heard=now,
            progress={},
            board_gen=board.gen,
            population=board.population,
            rate=run.rate,
            rate_mark=(now, board.gen),
            slots=Counter(s.node for s in layout),
            owners={s.strip: s.node for s in layout},
            heard={s.strip: now for s in layout},
            benched=run.benched,
        )
        log.info(
            "Life job %s epoch %d: %d strips on %d nodes from generation %d, %d-row halos",
            job,
            epoch,
            n,
            len(self.running[job].nodes),
            board.gen,
            halo,
        )
        self.publish_status(job)

    def _control(self, job: str, epoch: int, state: str) -> None:
        control = life.LifeControl(job=job, epoch=epoch, state=state)
        self.publish(topics.job_life_control(job), protocol.encode(control), qos=1, retain=True)

    # -- status -----------------------------------------------------------------------------

    def retire_ended(self, keep: int, batch: int) -> int:
        """Remove from the broker the retained status and control of ended Life jobs
        older than the ``keep`` that ended last (their boards stay in the database); at
        most ``batch`` at a time. Returns how many."""
        old = self.store.ended_beyond(keep, self._retired_to, batch)
        for job, finished in old:
            self.publish(topics.job_status(job), b"", qos=1, retain=True)
            self.publish(topics.job_life_control(job), b"", qos=1, retain=True)
            self._retired_to = max(self._retired_to, finished)
        return len(old)

    def republish_ended(self, limit: int) -> None:
        """The last ``limit`` ended jobs' final status, retained again."""
        for job in self.store.ended(limit):
            self.publish_status(job)

    def publish_status(self, job: str) -> None:
        record = self.store.get(job)
        request = record.request
        run = self.running.get(job)
        now = self.clock()
        board_gen, population, board_hash = self.store.summary(job)
        gen = board_gen
        if run is not None and run.strips and len(run.progress) == run.strips:
            gen = max(gen, min(run.progress.values()))
        if run is not None:
            mark_at, mark_gen = run.rate_mark
            if now - mark_at >= 1.0 and gen >= mark_gen:
                run.rate = (gen - mark_gen) / (now - mark_at)
                run.rate_mark = (now, gen)
        rate = run.rate if run is not None else 0.0
        status = life.LifeStatus(
            job=job,
            state=record.state,
            name=request.name,
            width=request.width,
            height=request.height,
            wrap=request.wrap,
            gens=request.gens,
            gen=min(gen, request.gens),
            epoch=record.epoch,
            strips=run.strips if run else 0,
            nodes=run.nodes[:1024] if run else (),
            population=population,
            population_gen=board_gen,
            rate=min(rate, 1e9),
            eta_s=(request.gens - gen) / rate if rate > 0 and record.state == "running" else None,
            hash=board_hash if record.state == "done" else None,
            created=record.created,
            finished=record.finished,
            ts=now,
            error=record.error,
            placement=request.placement,
            waiting=run.waiting if run is not None and not run.strips else None,
        )
        self.publish(topics.job_status(job), protocol.encode(status), qos=1, retain=True)
