"""A strip's halo exchange with its neighbours: what it sends, what it receives, and the
forged halos it catches.

Halos are keyed by (strip, side, generation) and the epoch is checked, so duplicates and
out-of-order messages change nothing. QoS 0 is the measured choice (72% efficiency against
63% at QoS 1), so a halo can be lost: the strip asks with a ``want`` and the neighbour
sends it again from a short history of what it sent. Each halo's CRC is kept a while: a
second, different halo for the same generation on a neighbour's topic (which only that
node's login can write) means one was forged, and the strip says so.
"""

import logging
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import paho.mqtt.client as mqtt

from piswarm import protocol
from piswarm.protocol import ProtocolError, life, topics

log = logging.getLogger(__name__)

DIGESTS_KEPT = 4
"""Halos' CRCs are kept for this many halo depths of generations back: a forged halo sent
early is taken, and the neighbour's real one, arriving when it is due, is compared."""

HaloKey = tuple[int, life.Side, int]  # the sender's strip, its side, the generation
Publish = Callable[[str, bytes, int], mqtt.MQTTMessageInfo | None]  # topic, payload, QoS


@dataclass
class ExchangeStats:
    halos_sent: int = 0
    halos_received: int = 0
    duplicates: int = 0
    stale: int = 0
    wants_sent: int = 0
    wants_answered: int = 0
    conflicts: int = 0  # two different halos for one generation from one neighbour
    rows_moved: int = 0


@dataclass
class HaloExchange:
    """One strip's side of the exchange (of one epoch of one job)."""

    node_id: str
    assign: life.StripAssign
    publish: Publish
    stats: ExchangeStats = field(default_factory=ExchangeStats)
    conflict: tuple[int, str] | None = None  # the first: generation, sender node
    # (strip, side, gen) -> the halo's header and rows
    _received: dict[HaloKey, tuple[life.Halo, np.ndarray]] = field(default_factory=dict)
    _sent: dict[tuple[str, int], bytes] = field(default_factory=dict)
    _digests: dict[HaloKey, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.words = life.words_for(self.assign.width)

    @property
    def local(self) -> bool:
        """A one-strip torus is its own neighbour: nothing to exchange."""
        return self.assign.strips == 1

    def topic(self, leaf: str, node: str | None = None, strip: int | None = None) -> str:
        a = self.assign
        return topics.life_strip(
            node or self.node_id, a.job, a.epoch, a.strip if strip is None else strip, leaf
        )

    def subscriptions(self) -> list[tuple[str, int]]:
        a = self.assign
        subs = [(topics.job_life_control(a.job), 1)]
        if not self.local:
            if a.above is not None:  # its bottom rows come down to us, it asks for our top
                subs.append((self.topic("down", a.above.node, a.above.strip), 0))
                subs.append((self.topic("want", a.above.node, a.above.strip), 0))
            if a.below is not None:
                subs.append((self.topic("up", a.below.node, a.below.strip), 0))
                subs.append((self.topic("want", a.below.node, a.below.strip), 0))
        return list(dict.fromkeys(subs))

    # -- sending ---------------------------------------------------------------------------

    def send(
        self, side: life.Side, rows: np.ndarray, *, gen: int, strip_rows: int, speed: int
    ) -> life.Halo:
        """Publish this generation's edge ``rows`` on ``side``, remembered to send again."""
        a = self.assign
        header = life.Halo(
            job=a.job,
            epoch=a.epoch,
            strip=a.strip,
            gen=gen,
            side=side,
            rows=rows.shape[0],
            words=self.words,
            strip_rows=strip_rows,
            speed=speed,
        )
        payload = life.encode_halo(header, rows.astype("<u8").tobytes())
        self._sent[(side, gen)] = payload
        for key in [key for key in self._sent if key[1] < gen - 2 * a.halo]:
            del self._sent[key]
        self.publish(self.topic(side), payload, 0)
        self.stats.halos_sent += 1
        return header

    def ask(self, missing: list[HaloKey]) -> None:
        """Ask the neighbours for the halos not here yet."""
        a = self.assign
        for strip, side, gen in missing:
            want = life.HaloWant(
                job=a.job, epoch=a.epoch, strip=a.strip, from_strip=strip, gen=gen, side=side
            )
            self.publish(self.topic("want"), protocol.encode(want), 0)
            self.stats.wants_sent += 1

    # -- receiving -------------------------------------------------------------------------

    def missing(self, needed: list[HaloKey]) -> list[HaloKey]:
        return [key for key in needed if key not in self._received]

    def rows_of(self, key: HaloKey) -> int:
        return int(self._received[key][1].shape[0])

    def take(self, key: HaloKey) -> tuple[life.Halo, np.ndarray]:
        return self._received.pop(key)

    def on_want(self, payload: bytes) -> None:
        want = life.decode_want(payload)
        if want.from_strip != self.assign.strip or want.epoch != self.assign.epoch:
            return  # asked of the strip's other neighbour
        sent = self._sent.get((want.side, want.gen))
        if sent is not None:
            self.publish(self.topic(want.side), sent, 0)
            self.stats.wants_answered += 1

    def on_halo(
        self, topic: str, payload: bytes, *, gen: int, on_conflict: Callable[[], None]
    ) -> None:
        """A neighbour's halo, while the strip is at generation ``gen``. ``on_conflict``
        is called when it is the first forged one caught."""
        node, job, epoch, strip, leaf = topics.parse_life_strip_topic(topic)
        header, body = life.decode_halo(payload)
        if (header.job, header.epoch, header.strip, header.side) != (job, epoch, strip, leaf):
            raise ProtocolError("halo header does not match its topic", topic=topic)
        if header.words != self.words:
            raise ProtocolError(f"halo of {header.words} words, the board has {self.words}")
        key = (header.strip, header.side, header.gen)
        digest = zlib.crc32(payload)
        first = self._digests.get(key)
        if first is not None and first != digest:
            self._conflicted(node, header, on_conflict)
            return
        if header.gen < gen or header.gen > gen + 2 * self.assign.halo:
            self.stats.stale += 1
            return
        if key in self._received:
            self.stats.duplicates += 1
            return
        self._digests[key] = digest
        kept_from = gen - DIGESTS_KEPT * self.assign.halo
        for old in [k for k in self._digests if k[2] < kept_from]:
            del self._digests[old]
        rows = np.frombuffer(body, dtype="<u8").astype(np.uint64)
        self._received[key] = (header, rows.reshape(header.rows, header.words))
        self.stats.halos_received += 1

    def _conflicted(self, node: str, header: life.Halo, on_conflict: Callable[[], None]) -> None:
        """Two different halos for one generation on a neighbour's topic: one is forged,
        and the strip may have computed with it. Every progress report from now on names
        the first such generation and the node; the coordinator decides (it rewinds the
        job to a board of that generation or earlier, without that node, or fails it)."""
        self.stats.conflicts += 1
        if self.conflict is not None:
            return
        self.conflict = (header.gen, node)
        log.warning(
            "strip %d: two different %s halos of strip %d for generation %d from "
            "node %s: the board cannot be trusted from there",
            self.assign.strip,
            header.side,
            header.strip,
            header.gen,
            node,
        )
        on_conflict()
