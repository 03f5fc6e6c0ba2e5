"""One strip of a distributed Life board, in its own process: compute, exchange, report.

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

Halos are keyed by (strip, side, generation) and the epoch is checked, so duplicates and
out-of-order messages change nothing. QoS 0 is the measured choice (72% efficiency against
63% at QoS 1), so a halo can be lost: after ``want_after`` seconds without it the strip
publishes a ``want`` and the neighbour sends it again from a short history. A strip never
waits forever: the coordinator re-partitions the board when a node dies and says so on the
retained control topic, which stops every strip of the old epoch.
"""

import logging
import math
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt

from piswarm import protocol
from piswarm.client import Message, MqttClient
from piswarm.heap import keep_heap_memory
from piswarm.life import (
    advance,
    finish_round,
    inner_rows,
    move_boundaries,
    pool,
    population,
)
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)

WANT_AFTER = 1.0
FIRST_WANT_EVERY = 0.1
MAX_SILENCE = 300.0
"""A strip that has heard nothing it needs for this long gives up (its coordinator is gone)."""
LINGER = 60.0
"""After its last generation a strip answers ``want``s this long, or until the job is over."""
WAITS_KEPT = 4096
SPEED_SMOOTHING = 0.5
"""Weight of a round's measured speed against the strip's running figure: a core that
slows down for seconds is followed within a few rounds, one slow round is halved."""


DIGESTS_KEPT = 4
"""Halos' CRCs are kept for this many halo depths of generations back: a forged halo sent
early is taken, and the neighbour's real one, arriving when it is due, is compared."""


@dataclass
class StripStats:
    rounds: int = 0
    halos_sent: int = 0
    halos_received: int = 0
    duplicates: int = 0
    stale: int = 0
    malformed: int = 0
    wants_sent: int = 0
    wants_answered: int = 0
    conflicts: int = 0  # two different halos for one generation from one neighbour
    rows_moved: int = 0
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=WAITS_KEPT))

    def wait_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the time spent waiting for halos, per round, in ms."""
        if not self.waits:
            return None
        ordered = sorted(self.waits)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


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
        self.settings = settings
        self.a = assign
        self.words = life.words_for(assign.width)
        self.rows = np.frombuffer(packed, dtype="<u8").astype(np.uint64)
        self.rows = self.rows.reshape(assign.rows, self.words)
        self.gen = assign.gen
        self.row0 = assign.row0  # boundaries move as neighbours balance their speeds
        self._speed = 0.0  # row-generations a second while computing (smoothed)
        self.clock = clock
        self.want_after = want_after
        self.max_silence = max_silence
        self.linger = linger
        self.stats = StripStats()
        self.stop_reason: str | None = None
        self.mqtt = MqttClient(
            settings,
            role=f"{node_id}-strip",
            subscriptions=self.subscriptions,
            handler=self._on_message,
            threaded=False,  # looped from the compute loop: halos go out when ready
            ticks=clock,
            name=f"strip {assign.strip} of {assign.job}",
        )
        # (strip, side, gen) -> the halo's header and rows
        self._received: dict[tuple[int, str, int], tuple[life.Halo, np.ndarray]] = {}
        self._sent: dict[tuple[str, int], bytes] = {}
        # (strip, side, gen) -> CRC of the halo first taken for it: a second, different one
        # is a conflict (an honest neighbour sends one halo a generation, resends the same)
        self._digests: dict[tuple[int, str, int], int] = {}
        self.conflict: tuple[int, str] | None = None  # the first: generation, sender node
        self._last_frame_gen = -(10**12)
        self._last_frame_at = -math.inf
        self._last_progress_at = -math.inf
        self._rate_mark = (self.clock(), self.gen)
        self._pace_mark = self._rate_mark
        self._computed = (0.0, 0)  # seconds spent computing, cells updated
        self._speed_mark = self._computed
        self._rate = 0.0
        self._local = assign.strips == 1  # a one-strip torus is its own neighbour

    # -- topics -------------------------------------------------------------------------

    def _topic(self, leaf: str, node: str | None = None, strip: int | None = None) -> str:
        return topics.life_strip(
            node or self.node_id,
            self.a.job,
            self.a.epoch,
            self.a.strip if strip is None else strip,
            leaf,
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        subs = [(topics.job_life_control(self.a.job), 1)]
        if not self._local:
            if self.a.above is not None:  # its bottom rows come down to us, it asks for our top
                subs.append((self._topic("down", self.a.above.node, self.a.above.strip), 0))
                subs.append((self._topic("want", self.a.above.node, self.a.above.strip), 0))
            if self.a.below is not None:
                subs.append((self._topic("up", self.a.below.node, self.a.below.strip), 0))
                subs.append((self._topic("want", self.a.below.node, self.a.below.strip), 0))
        return list(dict.fromkeys(subs))

    # -- run ----------------------------------------------------------------------------

    def run(self) -> str:
        """Compute to the last generation; returns ``done``, ``stopped`` or ``failed``."""
        self.mqtt.start()
        try:
            if not self._until(self.mqtt.subscribed.is_set, self.max_silence):
                return self._finish("failed")
            self._check_login()  # a refusal stops the run below
            self._progress(force=True)
            self._pace_mark = (self.clock(), self.gen)  # due times count from here
            while self.gen < self.a.gens and self.stop_reason is None:
                if not self._round():
                    break
            if self.stop_reason is not None:
                return self._finish("stopped")
            if self.gen < self.a.gens:
                return self._finish("failed")
            self._linger()
            return self._finish("done")
        finally:
            self.mqtt.stop(timeout=0.0)

    def _round(self) -> bool:
        k = life.round_depth(self.a.halo, self.a.pace, self.a.gens - self.gen)
        self._keep_pace()
        rows = self.rows
        spent = 0.0
        if self._local:
            above, below = (rows[-k:], rows[:k]) if self.a.wrap == "torus" else (None, None)
            computing = self.clock()
            self.rows = advance(rows, above, below, k, self.a.width, self.a.wrap)
            spent = self.clock() - computing
        else:
            sent = self._send_halos(k)
            # The rows k and more from both edges need nothing from the neighbours: they
            # are computed while the halos travel (and while a late neighbour finishes).
            inner = None
            if rows.shape[0] > 2 * k:
                computing = self.clock()
                inner = inner_rows(rows, k, self.a.width, self.a.wrap)
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
                self.rows = advance(*moved, k, self.a.width, self.a.wrap)
            else:
                self.rows = finish_round(
                    inner, rows, above, below, top, bottom, k, self.a.width, self.a.wrap
                )
            spent += self.clock() - computing
            self.row0 += top
        self._computed = (
            self._computed[0] + spent,
            self._computed[1] + rows.shape[0] * self.a.width * k,
        )
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
        a, rows = self.a, self.rows
        sent = life.halo_rows(k, rows.shape[0])
        mine: dict[life.Side, life.Halo] = {}
        if a.above is not None:
            mine["up"] = self._send_halo("up", rows[:sent])
        if a.below is not None:
            mine["down"] = self._send_halo("down", rows[-sent:])
        return mine

    def _await_exchange(
        self, k: int, mine: dict[life.Side, life.Halo]
    ) -> tuple[np.ndarray | None, np.ndarray | None, int, int] | None:
        """The neighbours' rows of this generation, and how far the strip's top and
        bottom edges move (None: stopped)."""
        a = self.a
        needed: list[tuple[int, life.Side, int]] = []
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
            head, above = self._received.pop(needed[0])
            if a.strip > 0:
                top = life.boundary_shift(head, mine["up"], k, a.halo)
        if a.below is not None:
            head, below = self._received.pop(needed[-1])
            if a.strip < a.strips - 1:
                bottom = life.boundary_shift(mine["down"], head, k, a.halo)
        if top or bottom:
            self.stats.rows_moved += abs(top) + abs(bottom)
        return above, below, top, bottom

    def _keep_pace(self) -> None:
        """With a pace, wait (serving the network) until this generation is due."""
        if self.a.pace <= 0:
            return
        started, gen0 = self._pace_mark
        due = started + (self.gen - gen0) / self.a.pace
        while self.stop_reason is None:
            now = self.clock()
            if now >= due:
                return
            self._loop(min(0.05, due - now))

    def _send_halo(self, side: life.Side, rows: np.ndarray) -> life.Halo:
        header = life.Halo(
            job=self.a.job,
            epoch=self.a.epoch,
            strip=self.a.strip,
            gen=self.gen,
            side=side,
            rows=rows.shape[0],
            words=self.words,
            strip_rows=self.rows.shape[0],
            speed=min(int(self._speed), 2**53) if self.a.pace <= 0 else 0,
        )
        payload = life.encode_halo(header, rows.astype("<u8").tobytes())
        self._sent[(side, self.gen)] = payload
        for key in [key for key in self._sent if key[1] < self.gen - 2 * self.a.halo]:
            del self._sent[key]
        self._publish(self._topic(side), payload, 0)
        self.stats.halos_sent += 1
        return header

    def _await_halos(self, needed: list[tuple[int, life.Side, int]], k: int) -> bool:
        heard = self.clock()
        # The first halos are the likeliest lost (QoS 0): a neighbour that started first
        # published them before this strip subscribed. Ask at once, and often, until the
        # exchange runs; after that a second of patience (ANCHORS: halos are rarely lost).
        every = (
            min(self.want_after, FIRST_WANT_EVERY) if self.stats.rounds == 0 else self.want_after
        )
        next_want = heard + (0.0 if self.stats.rounds == 0 else every)
        while self.stop_reason is None:
            missing = [key for key in needed if key not in self._received]
            if not missing:
                for key in needed:
                    got = self._received[key][1].shape[0]
                    if not k <= got <= 3 * k:
                        log.warning("halo %s has %d rows, not %d to %d", key, got, k, 3 * k)
                        self.stop_reason = "a neighbour sent the wrong halo depth"
                        return False
                return True
            now = self.clock()
            if now >= next_want:
                for strip, side, gen in missing:
                    want = life.HaloWant(
                        job=self.a.job,
                        epoch=self.a.epoch,
                        strip=self.a.strip,
                        from_strip=strip,
                        gen=gen,
                        side=side,
                    )
                    self._publish(self._topic("want"), protocol.encode(want), 0)
                    self.stats.wants_sent += 1
                next_want = now + every
                self._progress()
            if now - heard > self.max_silence:
                log.error("strip %d: no halo for %.0f s, giving up", self.a.strip, now - heard)
                return False
            self._loop(0.05)
        return False

    def _after_round(self, k: int) -> None:
        a = self.a
        if self.gen == a.gens:  # before the last checkpoint: the job may end with it, and
            self._progress(force=True)  # the agent stop this process before it lingers
        # Every strip of an epoch runs the same rounds, so all checkpoint at the same
        # generations: the first round end past each multiple of checkpoint_every.
        if (
            self.gen == a.gens
            or self.gen // a.checkpoint_every > (self.gen - k) // a.checkpoint_every
        ):
            self._checkpoint()
        now = self.clock()
        if (
            a.frame_every
            and self.gen - self._last_frame_gen >= a.frame_every
            and now - self._last_frame_at >= life.frame_interval(a.strips)
        ) or (a.frame_every and self.gen == a.gens):
            self._frame()
            self._last_frame_gen, self._last_frame_at = self.gen, now
        self._progress()
        self._loop(0)  # wants and control messages that came in while computing

    def _checkpoint(self) -> None:
        raw = self.rows.astype("<u8").tobytes()
        header = life.Checkpoint(
            job=self.a.job,
            epoch=self.a.epoch,
            strip=self.a.strip,
            row0=self.row0,
            rows=self.rows.shape[0],
            width=self.a.width,
            gen=self.gen,
            population=population(self.rows),
            crc32=zlib.crc32(raw),
        )
        info = self._publish(self._topic("checkpoint"), life.encode_checkpoint(header, raw), 1)
        if self.gen == self.a.gens and info is not None:
            self._until(info.is_published, 10.0)

    def _frame(self) -> None:
        scale = life.frame_scale(self.a.width, self.a.height)
        pooled = pool(self.rows, self.a.width, self.row0, scale)
        header = life.Frame(
            job=self.a.job,
            epoch=self.a.epoch,
            strip=self.a.strip,
            strips=self.a.strips,
            node=self.node_id,
            row0=self.row0,
            rows=self.rows.shape[0],
            width=self.a.width,
            height=self.a.height,
            gen=self.gen,
            scale=scale,
            population=population(self.rows),
        )
        bits = np.packbits(pooled.astype(bool), axis=1).tobytes()
        self._publish(self._topic("frame"), life.encode_frame(header, bits), 0)

    def _progress(self, *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self._last_progress_at < 1.0:
            return
        mark_at, mark_gen = self._rate_mark
        if now > mark_at and self.gen > mark_gen:
            self._rate = (self.gen - mark_gen) / (now - mark_at)
        self._rate_mark = (now, self.gen)
        self._last_progress_at = now
        (seconds, cells), (seconds0, cells0) = self._computed, self._speed_mark
        speed = (cells - cells0) / (seconds - seconds0) if seconds > seconds0 else None
        self._speed_mark = self._computed
        report = life.Progress(
            job=self.a.job,
            epoch=self.a.epoch,
            strip=self.a.strip,
            gen=self.gen,
            population=population(self.rows),
            rate=min(self._rate, 1e9),
            wait_p50_ms=self.stats.wait_ms(0.5),
            wait_p99_ms=self.stats.wait_ms(0.99),
            duplicates=self.stats.duplicates,
            stale=self.stats.stale,
            malformed=self.stats.malformed,
            wants_sent=self.stats.wants_sent,
            cells_per_s=None if speed is None else min(speed, 1e13),
            row0=self.row0,
            rows=self.rows.shape[0],
            conflict_gen=None if self.conflict is None else self.conflict[0],
            conflict_node=None if self.conflict is None else self.conflict[1],
        )
        self._publish(self._topic("progress"), protocol.encode(report), 0)

    def _linger(self) -> None:
        """Answer the neighbours' ``want``s until the job is over (they may need our last
        halos again); return early once the coordinator says so."""
        deadline = self.clock() + self.linger
        while self.stop_reason is None and self.clock() < deadline and not self._local:
            self._loop(0.1)

    def _finish(self, outcome: str) -> str:
        log.info(
            "strip %s/%d/%d %s at generation %d (%s)",
            self.a.job,
            self.a.epoch,
            self.a.strip,
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
            log.warning("strip %d: ignored bad message on %s: %s", self.a.strip, msg.topic, exc)
        except Exception:  # boundary: a bug in one message must not stop the run
            self.stats.malformed += 1
            log.exception("strip %d: failed to handle a message on %s", self.a.strip, msg.topic)

    def _on_conflict(self, node: str, header: life.Halo) -> None:
        """Two different halos for one generation on a neighbour's topic, which only that
        node's login can write: one is forged, and the strip may have computed with it.
        Every progress report from now on names the first such generation and the node;
        the coordinator decides (it rewinds the job to a board of that generation or
        earlier, without that node, or fails the job)."""
        self.stats.conflicts += 1
        if self.conflict is None:
            self.conflict = (header.gen, node)
            log.warning(
                "strip %d: two different %s halos of strip %d for generation %d from "
                "node %s: the board cannot be trusted from there",
                self.a.strip,
                header.side,
                header.strip,
                header.gen,
                node,
            )
            self._progress(force=True)

    def _handle(self, topic: str, payload: bytes) -> None:
        if topic == topics.job_life_control(self.a.job):
            if not payload:
                return
            control = life.decode_control(payload)
            if control.epoch > self.a.epoch or control.state != "running":
                self.stop_reason = f"job {control.state}, epoch {control.epoch}"
            return
        node, job, epoch, strip, leaf = topics.parse_life_strip_topic(topic)
        if job != self.a.job or epoch != self.a.epoch:
            self.stats.stale += 1
            return
        if leaf == "want":
            want = life.decode_want(payload)
            if want.from_strip != self.a.strip or want.epoch != self.a.epoch:
                return  # asked of the strip's other neighbour
            sent = self._sent.get((want.side, want.gen))
            if sent is not None:
                self._publish(self._topic(want.side), sent, 0)
                self.stats.wants_answered += 1
            return
        header, body = life.decode_halo(payload)
        if (header.job, header.epoch, header.strip, header.side) != (job, epoch, strip, leaf):
            raise ProtocolError("halo header does not match its topic", topic=topic)
        if header.words != self.words:
            raise ProtocolError(f"halo of {header.words} words, the board has {self.words}")
        key = (header.strip, header.side, header.gen)
        digest = zlib.crc32(payload)
        first = self._digests.get(key)
        if first is not None and first != digest:
            self._on_conflict(node, header)
            return
        if header.gen < self.gen or header.gen > self.gen + 2 * self.a.halo:
            self.stats.stale += 1
            return
        if key in self._received:
            self.stats.duplicates += 1
            return
        self._digests[key] = digest
        for old in [k for k in self._digests if k[2] < self.gen - DIGESTS_KEPT * self.a.halo]:
            del self._digests[old]
        rows = np.frombuffer(body, dtype="<u8").astype(np.uint64)
        self._received[key] = (header, rows.reshape(header.rows, header.words))
        self.stats.halos_received += 1


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
