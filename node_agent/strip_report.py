"""What a strip tells the others: progress once a second, pictures for the display, and
checkpoints from which the coordinator assembles whole boards.

Pure bookkeeping over the strip's state: it builds the messages and paces them; the strip
(:mod:`node_agent.life_strip`) passes its publish function and its clock in.
"""

import math
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt

from node_agent.strip_exchange import HaloExchange, Publish
from piswarm import protocol
from piswarm.life import pool, population
from piswarm.protocol import life

WAITS_KEPT = 4096
PROGRESS_EVERY = 1.0  # seconds between progress reports (more when something happens)


@dataclass
class StripStats:
    """The strip's own figures (its exchange keeps its own: ``HaloExchange.stats``)."""

    rounds: int = 0
    malformed: int = 0
    waits: deque[float] = field(default_factory=lambda: deque(maxlen=WAITS_KEPT))

    def wait_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the time spent waiting for halos, per round, in ms."""
        if not self.waits:
            return None
        ordered = sorted(self.waits)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class Board:
    """The strip's part of the board now."""

    gen: int
    rows: np.ndarray
    row0: int


class StripReporter:
    """Builds and paces one strip's progress, frames and checkpoints."""

    def __init__(
        self,
        *,
        node_id: str,
        exchange: HaloExchange,
        stats: StripStats,
        publish: Publish,
        clock: Callable[[], float],
        gen: int,
    ) -> None:
        self.node_id = node_id
        self.assign = exchange.assign
        self.exchange = exchange
        self.stats = stats
        self.publish = publish
        self.clock = clock
        self.computed = (0.0, 0)  # seconds spent computing, cells updated
        self._speed_mark = self.computed
        self._rate_mark = (clock(), gen)
        self._rate = 0.0
        self._last_progress_at = -math.inf
        self._last_frame_gen = -(10**12)
        self._last_frame_at = -math.inf

    def add_work(self, seconds: float, cells: int) -> None:
        self.computed = (self.computed[0] + seconds, self.computed[1] + cells)

    def progress(self, board: Board, *, force: bool = False) -> None:
        """A progress report, at most once a second unless ``force``."""
        now = self.clock()
        if not force and now - self._last_progress_at < PROGRESS_EVERY:
            return
        mark_at, mark_gen = self._rate_mark
        if now > mark_at and board.gen > mark_gen:
            self._rate = (board.gen - mark_gen) / (now - mark_at)
        self._rate_mark = (now, board.gen)
        self._last_progress_at = now
        (seconds, cells), (seconds0, cells0) = self.computed, self._speed_mark
        speed = (cells - cells0) / (seconds - seconds0) if seconds > seconds0 else None
        self._speed_mark = self.computed
        a, seen, conflict = self.assign, self.exchange.stats, self.exchange.conflict
        report = life.Progress(
            job=a.job,
            epoch=a.epoch,
            strip=a.strip,
            gen=board.gen,
            population=population(board.rows),
            rate=min(self._rate, 1e9),
            wait_p50_ms=self.stats.wait_ms(0.5),
            wait_p99_ms=self.stats.wait_ms(0.99),
            duplicates=seen.duplicates,
            stale=seen.stale,
            malformed=self.stats.malformed,
            wants_sent=seen.wants_sent,
            cells_per_s=None if speed is None else min(speed, 1e13),
            row0=board.row0,
            rows=board.rows.shape[0],
            conflict_gen=None if conflict is None else conflict[0],
            conflict_node=None if conflict is None else conflict[1],
            busy_s=round(seconds, 6),
        )
        self.publish(self.exchange.topic("progress"), protocol.encode(report), 0)

    def checkpoint_due(self, gen: int, k: int) -> bool:
        """Every strip of an epoch runs the same rounds, so all checkpoint at the same
        generations: the first round end past each multiple of ``checkpoint_every``, and
        the last generation."""
        every = self.assign.checkpoint_every
        return gen == self.assign.gens or gen // every > (gen - k) // every

    def checkpoint(self, board: Board) -> mqtt.MQTTMessageInfo | None:
        """Publish a checkpoint (QoS 1); what the publish returned, to wait on."""
        raw = board.rows.astype("<u8").tobytes()
        a = self.assign
        header = life.Checkpoint(
            job=a.job,
            epoch=a.epoch,
            strip=a.strip,
            row0=board.row0,
            rows=board.rows.shape[0],
            width=a.width,
            gen=board.gen,
            population=population(board.rows),
            crc32=zlib.crc32(raw),
        )
        payload = life.encode_checkpoint(header, raw)
        return self.publish(self.exchange.topic("checkpoint"), payload, 1)

    def frame(self, board: Board) -> None:
        """A picture for the display, when one is due (at most a few a second, fewer
        when many strips send them; always the last generation's)."""
        a, now = self.assign, self.clock()
        if not a.frame_every:
            return
        due = (
            board.gen - self._last_frame_gen >= a.frame_every
            and now - self._last_frame_at >= life.frame_interval(a.strips)
        )
        if not (due or board.gen == a.gens):
            return
        self._last_frame_gen, self._last_frame_at = board.gen, now
        scale = life.frame_scale(a.width, a.height)
        pooled = pool(board.rows, a.width, board.row0, scale)
        header = life.Frame(
            job=a.job,
            epoch=a.epoch,
            strip=a.strip,
            strips=a.strips,
            node=self.node_id,
            row0=board.row0,
            rows=board.rows.shape[0],
            width=a.width,
            height=a.height,
            gen=board.gen,
            scale=scale,
            population=population(board.rows),
        )
        bits = np.packbits(pooled.astype(bool), axis=1).tobytes()
        self.publish(self.exchange.topic("frame"), life.encode_frame(header, bits), 0)
