"""One strip of a distributed Life board, in its own process: the kernel loop.

Three parts: this module computes (rounds, pace, the boundaries' balance), the strip's
exchange (:mod:`node_agent.strip_exchange`) sends and takes halos, and its reporter
(:mod:`node_agent.strip_report`) sends progress, frames and checkpoints.

The strip drives its own MQTT connection from its compute loop (``client.loop()`` between
rounds; ANCHORS.md: paho's ``loop_start()`` thread cost 15 points of parallel efficiency).
Each round it publishes its top and bottom ``k`` rows (QoS 0), computes the rows that
need nothing from its neighbours ``k`` generations on (:func:`inner_rows`) while those
travel, waits for its neighbours' rows of the same generation, and then finishes the rows
near its edges (:func:`finish_round`): a neighbour that is a little late costs nothing.

Halos carry up to ``2k`` rows more than a round needs, and the sender's height and speed:
before each round both strips at a boundary move it the same number of rows
(:func:`~piswarm.protocol.life.boundary_shift`), so the quicker strip takes rows from the
slower one and neither waits long for the other (the rows that change hands are in the
halos already).

A halo can be lost (QoS 0): after ``want_after`` seconds without it the strip asks again
(a ``want``). A strip never waits forever: the coordinator re-partitions the board when a
node dies and says so on the retained control topic, which stops every strip of the old
epoch.
"""

import logging
import time
from collections.abc import Callable

import numpy as np
import paho.mqtt.client as mqtt

from node_agent.strip_exchange import HaloExchange, HaloKey
from node_agent.strip_report import Board, StripReporter, StripStats
from piswarm.client import Message, MqttClient
from piswarm.heap import keep_heap_memory
from piswarm.life import advance, finish_round, inner_rows, move_boundaries
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)

WANT_AFTER = 1.0
FIRST_WANT_EVERY = 0.1
MAX_SILENCE = 300.0
"""A strip that has heard nothing it needs for this long gives up (its coordinator is gone)."""
LINGER = 60.0
"""After its last generation a strip answers ``want``s this long, or until the job is over."""
SPEED_SMOOTHING = 0.5
"""Weight of a round's measured speed against the strip's running figure: a core that
slows down for seconds is followed within a few rounds, one slow round is halved."""


class StripRun:
    """Runs one :class:`~piswarm.protocol.life.StripAssign` to its last generation."""

    def __init__(
        self,
        *,
        node_id: str,
        settings: BrokerSettings,
        assign: life.StripAssign,
        packed: bytes,
        clock: Callable[[], float] = time.monotonic,
        want_after: float = WANT_AFTER,
        max_silence: float = MAX_SILENCE,
        linger: float = LINGER,
    ) -> None:
        self.node_id = node_id
        self.assign = assign
        words = life.words_for(assign.width)
        self.rows = np.frombuffer(packed, dtype="<u8").astype(np.uint64)
        self.rows = self.rows.reshape(assign.rows, words)
        self.gen = assign.gen
        self.row0 = assign.row0  # boundaries move as neighbours balance their speeds
        self._speed = 0.0  # row-generations a second while computing (smoothed)
        self.clock = clock
        self.want_after = want_after
        self.max_silence = max_silence
        self.linger = linger
        self.stats = StripStats()
        self.stop_reason: str | None = None
        self.exchange = HaloExchange(node_id=node_id, assign=assign, publish=self._publish)
        self.mqtt = MqttClient(
            settings,
            role=f"{node_id}-strip",
            subscriptions=self.exchange.subscriptions,
            handler=self._on_message,
            threaded=False,  # looped from the compute loop: halos go out when ready
            ticks=clock,
            name=f"strip {assign.strip} of {assign.job}",
        )
        self.report = StripReporter(
            node_id=node_id,
            exchange=self.exchange,
            stats=self.stats,
            publish=self._publish,
            clock=clock,
            gen=self.gen,
        )
        self._pace_mark = (clock(), self.gen)

    @property
    def board(self) -> Board:
        return Board(self.gen, self.rows, self.row0)

    # -- run ----------------------------------------------------------------------------

    def run(self) -> str:
        """Compute to the last generation; returns ``done``, ``stopped`` or ``failed``."""
        self.mqtt.start()
        try:
            if not self._until(self.mqtt.subscribed.is_set, self.max_silence):
                return self._finish("failed")
            self._check_login()  # a refusal stops the run below
            self.report.progress(self.board, force=True)
            self._pace_mark = (self.clock(), self.gen)  # due times count from here
            while self.gen < self.assign.gens and self.stop_reason is None:
                if not self._round():
                    break
            if self.stop_reason is not None:
                return self._finish("stopped")
            if self.gen < self.assign.gens:
                return self._finish("failed")
            self._linger()
            return self._finish("done")
        finally:
            self.mqtt.stop(timeout=0.0)

    def _round(self) -> bool:
        a = self.assign
        k = life.round_depth(a.halo, a.pace, a.gens - self.gen)
        self._keep_pace()
        rows = self.rows
        spent = 0.0
        if self.exchange.local:
            above, below = (rows[-k:], rows[:k]) if a.wrap == "torus" else (None, None)
            computing = self.clock()
            self.rows = advance(rows, above, below, k, a.width, a.wrap)
            spent = self.clock() - computing
        else:
            sent = self._send_halos(k)
            # The rows k and more from both edges need nothing from the neighbours: they
            # are computed while the halos travel (and while a late neighbour finishes).
            inner = None
            if rows.shape[0] > 2 * k:
                computing = self.clock()
                inner = inner_rows(rows, k, a.width, a.wrap)
                spent = self.clock() - computing
            waiting = self.clock()
            exchanged = self._await_exchange(k, sent)
            if exchanged is None:
                return False
            self.stats.waits.append(self.clock() - waiting)
            above, below, top, bottom = exchanged
            computing = self.clock()
            if inner is None:
                moved = move_boundaries(rows, above, below, top, bottom, k)
                self.rows = advance(*moved, k, a.width, a.wrap)
            else:
                self.rows = finish_round(inner, rows, above, below, top, bottom, k, a.width, a.wrap)
            spent += self.clock() - computing
            self.row0 += top
        self.report.add_work(spent, rows.shape[0] * a.width * k)
        if spent > 0:
            measured = rows.shape[0] * k / spent
            self._speed = (
                measured
                if not self._speed
                else (self._speed + SPEED_SMOOTHING * (measured - self._speed))
            )
        self.gen += k
        self.stats.rounds += 1
        self._after_round(k)
        return True

    def _send_halos(self, k: int) -> dict[life.Side, life.Halo]:
        """Publish this generation's edge rows for the neighbours (``k`` and what the
        strip can spare beyond them, so that the boundary can move)."""
        a, rows = self.assign, self.rows
        sent = life.halo_rows(k, rows.shape[0])
        speed = min(int(self._speed), 2**53) if a.pace <= 0 else 0
        mine: dict[life.Side, life.Halo] = {}
        if a.above is not None:
            mine["up"] = self.exchange.send(
                "up", rows[:sent], gen=self.gen, strip_rows=rows.shape[0], speed=speed
            )
        if a.below is not None:
            mine["down"] = self.exchange.send(
                "down", rows[-sent:], gen=self.gen, strip_rows=rows.shape[0], speed=speed
            )
        return mine

    def _await_exchange(
        self, k: int, mine: dict[life.Side, life.Halo]
    ) -> tuple[np.ndarray | None, np.ndarray | None, int, int] | None:
        """The neighbours' rows of this generation, and how far the strip's top and
        bottom edges move (None: stopped)."""
        a = self.assign
        needed: list[HaloKey] = []
        if a.above is not None:
            needed.append((a.above.strip, "down", self.gen))
        if a.below is not None:
            needed.append((a.below.strip, "up", self.gen))
        if not self._await_halos(needed, k):
            return None
        above = below = None
        top = bottom = 0
        # Only boundaries inside the board move: never the torus seam above strip 0.
        if a.above is not None:
            head, above = self.exchange.take(needed[0])
            if a.strip > 0:
                top = life.boundary_shift(head, mine["up"], k, a.halo)
        if a.below is not None:
            head, below = self.exchange.take(needed[-1])
            if a.strip < a.strips - 1:
                bottom = life.boundary_shift(mine["down"], head, k, a.halo)
        if top or bottom:
            self.exchange.stats.rows_moved += abs(top) + abs(bottom)
        return above, below, top, bottom

    def _keep_pace(self) -> None:
        """With a pace, wait (serving the network) until this generation is due."""
        if self.assign.pace <= 0:
            return
        started, gen0 = self._pace_mark
        due = started + (self.gen - gen0) / self.assign.pace
        while self.stop_reason is None:
            now = self.clock()
            if now >= due:
                return
            self._loop(min(0.05, due - now))

    def _await_halos(self, needed: list[HaloKey], k: int) -> bool:
        heard = self.clock()
        # The first halos are the likeliest lost (QoS 0): a neighbour that started first
        # published them before this strip subscribed. Ask at once, and often, until the
        # exchange runs; after that a second of patience (ANCHORS: halos are rarely lost).
        first = self.stats.rounds == 0
        every = min(self.want_after, FIRST_WANT_EVERY) if first else self.want_after
        next_want = heard + (0.0 if first else every)
        while self.stop_reason is None:
            missing = self.exchange.missing(needed)
            if not missing:
                for key in needed:
                    got = self.exchange.rows_of(key)
                    if not k <= got <= 3 * k:
                        log.warning("halo %s has %d rows, not %d to %d", key, got, k, 3 * k)
                        self.stop_reason = "a neighbour sent the wrong halo depth"
                        return False
                return True
            now = self.clock()
            if now >= next_want:
                self.exchange.ask(missing)
                next_want = now + every
                self.report.progress(self.board)
            if now - heard > self.max_silence:
                log.error("strip %d: no halo for %.0f s, giving up", self.assign.strip, now - heard)
                return False
            self._loop(0.05)
        return False

    def _after_round(self, k: int) -> None:
        board = self.board
        if self.gen == self.assign.gens:  # before the last checkpoint: the job may end
            self.report.progress(board, force=True)  # with it, and the agent stop us
        if self.report.checkpoint_due(self.gen, k):
            info = self.report.checkpoint(board)
            if self.gen == self.assign.gens and info is not None:
                self._until(info.is_published, 10.0)
        self.report.frame(board)
        self.report.progress(board)
        self._loop(0)  # wants and control messages that came in while computing

    def _linger(self) -> None:
        """Answer the neighbours' ``want``s until the job is over (they may need our last
        halos again); return early once the coordinator says so."""
        deadline = self.clock() + self.linger
        while self.stop_reason is None and self.clock() < deadline and not self.exchange.local:
            self._loop(0.1)

    def _finish(self, outcome: str) -> str:
        a = self.assign
        log.info(
            "strip %s/%d/%d %s at generation %d (%s)",
            a.job,
            a.epoch,
            a.strip,
            outcome,
            self.gen,
            self.stop_reason or "",
        )
        return outcome

    # -- MQTT -------------------------------------------------------------------------------

    def _until(self, condition: Callable[[], bool], timeout: float) -> bool:
        deadline = self.clock() + timeout
        while not condition():
            if self.clock() >= deadline:
                return False
            self._loop(0.05)
        return True

    def _loop(self, timeout: float) -> None:
        """The network's turn, from the compute loop (the client reconnects, backing off,
        when the broker is away)."""
        self.mqtt.loop(timeout)
        self._check_login()

    def _check_login(self) -> None:
        if self.mqtt.refused is not None and self.stop_reason is None:
            self.stop_reason = "refused by the broker"
        elif self.mqtt.stats.subscribe_refused and self.stop_reason is None:
            self.stop_reason = "subscription refused"

    def _publish(self, topic: str, payload: bytes, qos: int) -> mqtt.MQTTMessageInfo | None:
        return self.mqtt.publish(topic, payload, qos=qos)

    def _on_message(self, msg: Message) -> None:
        # Called from the client's loop() on this very thread; a bad message is counted.
        try:
            self._handle(msg.topic, msg.payload)
        except ProtocolError as exc:
            self.stats.malformed += 1
            log.warning(
                "strip %d: ignored bad message on %s: %s", self.assign.strip, msg.topic, exc
            )
        except Exception:  # boundary: a bug in one message must not stop the run
            self.stats.malformed += 1
            log.exception(
                "strip %d: failed to handle a message on %s", self.assign.strip, msg.topic
            )

    def _handle(self, topic: str, payload: bytes) -> None:
        a = self.assign
        if topic == topics.job_life_control(a.job):
            if not payload:
                return
            control = life.decode_control(payload)
            if control.epoch > a.epoch or control.state != "running":
                self.stop_reason = f"job {control.state}, epoch {control.epoch}"
            return
        _node, job, epoch, _strip, leaf = topics.parse_life_strip_topic(topic)
        if job != a.job or epoch != a.epoch:
            self.exchange.stats.stale += 1
            return
        if leaf == "want":
            self.exchange.on_want(payload)
            return
        self.exchange.on_halo(
            topic,
            payload,
            gen=self.gen,
            on_conflict=lambda: self.report.progress(self.board, force=True),
        )


def run_strip(node_id: str, settings: BrokerSettings, payload: bytes, parent: int) -> None:
    """Entry point of a strip process (spawned by the node agent)."""
    from piswarm import logs
    from piswarm.children import watch_parent

    watch_parent(parent)
    logs.setup(logging.INFO)
    if not keep_heap_memory():
        log.info("no glibc mallopt here: the strip's temporaries are not kept")
    assign, packed = life.decode_assign(payload)
    outcome = StripRun(node_id=node_id, settings=settings, assign=assign, packed=packed).run()
    raise SystemExit(0 if outcome in ("done", "stopped") else 1)
