"""A strip's exchange and reporter, driven directly: no broker, a hand clock."""

import numpy as np
import pytest

from node_agent.strip_exchange import HaloExchange
from node_agent.strip_report import Board, StripReporter, StripStats
from piswarm import protocol
from piswarm.protocol import ProtocolError, life, topics


def assign(strip=0, strips=2, frame_every=0, checkpoint_every=100, gens=1000):
    return life.StripAssign(
        job="l1-a",
        epoch=1,
        strip=strip,
        strips=strips,
        row0=0 if strip == 0 else 16,
        rows=16,
        width=64,
        height=32,
        wrap="dead",
        gen=0,
        gens=gens,
        halo=4,
        frame_every=frame_every,
        checkpoint_every=checkpoint_every,
        above=None if strip == 0 else life.StripRef(node="pi-01", strip=0),
        below=life.StripRef(node="pi-02", strip=1) if strip == 0 else None,
    )


class Wire:
    def __init__(self):
        self.sent = []

    def __call__(self, topic, payload, qos):
        self.sent.append((topic, payload, qos))

    def on(self, leaf):
        return [(t, p) for t, p, _q in self.sent if t.endswith("/" + leaf)]


def rows(n, fill):
    return np.full((n, 1), fill, dtype=np.uint64)


def test_a_halo_sent_is_sent_again_when_asked_and_only_then():
    wire = Wire()
    upper = HaloExchange(node_id="pi-01", assign=assign(0), publish=wire)
    upper.send("down", rows(8, 7), gen=4, strip_rows=16, speed=0)
    assert len(wire.on("down")) == 1
    want = life.HaloWant(job="l1-a", epoch=1, strip=1, from_strip=0, gen=4, side="down")
    upper.on_want(protocol.encode(want))
    assert len(wire.on("down")) == 2 and wire.on("down")[0][1] == wire.on("down")[1][1]
    elsewhere = life.HaloWant(job="l1-a", epoch=1, strip=1, from_strip=5, gen=4, side="down")
    upper.on_want(protocol.encode(elsewhere))  # asked of another strip
    gone = life.HaloWant(job="l1-a", epoch=1, strip=1, from_strip=0, gen=0, side="down")
    upper.on_want(protocol.encode(gone))  # never sent (or long forgotten)
    assert len(wire.on("down")) == 2 and upper.stats.wants_answered == 1


def test_halos_are_taken_once_checked_and_a_forged_one_is_caught():
    wire = Wire()
    upper = HaloExchange(node_id="pi-01", assign=assign(0), publish=wire)
    lower = HaloExchange(node_id="pi-02", assign=assign(1), publish=wire)
    conflicts = []
    lower.send("up", rows(8, 1), gen=0, strip_rows=16, speed=0)
    topic, honest = wire.on("up")[-1]
    upper.on_halo(topic, honest, gen=0, on_conflict=lambda: conflicts.append(1))
    upper.on_halo(topic, honest, gen=0, on_conflict=lambda: conflicts.append(1))
    assert upper.stats.halos_received == 1 and upper.stats.duplicates == 1
    assert upper.missing([(1, "up", 0), (1, "up", 4)]) == [(1, "up", 4)]
    head, got = upper.take((1, "up", 0))
    assert head.gen == 0 and got.tolist() == [[1]] * 8
    # The same generation again, different rows, on pi-02's topic: forged.
    lower.send("up", rows(8, 2), gen=0, strip_rows=16, speed=0)
    _topic, forged = wire.on("up")[-1]
    upper.on_halo(topic, forged, gen=0, on_conflict=lambda: conflicts.append(1))
    upper.on_halo(topic, forged, gen=0, on_conflict=lambda: conflicts.append(1))
    assert upper.conflict == (0, "pi-02") and conflicts == [1] and upper.stats.conflicts == 2
    # Too old, or from far ahead: stale.
    lower.send("up", rows(8, 3), gen=40, strip_rows=16, speed=0)
    upper.on_halo(wire.on("up")[-1][0], wire.on("up")[-1][1], gen=0, on_conflict=list)
    assert upper.stats.stale == 1


def test_a_halo_that_does_not_match_its_topic_or_board_is_refused():
    wire = Wire()
    lower = HaloExchange(node_id="pi-02", assign=assign(1), publish=wire)
    upper = HaloExchange(node_id="pi-01", assign=assign(0), publish=wire)
    lower.send("up", rows(8, 1), gen=0, strip_rows=16, speed=0)
    _topic, payload = wire.on("up")[-1]
    wrong_topic = topics.life_strip("pi-02", "l1-a", 1, 1, "down")
    with pytest.raises(ProtocolError, match="does not match its topic"):
        upper.on_halo(wrong_topic, payload, gen=0, on_conflict=list)
    wide = HaloExchange(node_id="pi-02", assign=assign(1), publish=wire)
    wide.words = 2
    wide.send("up", np.zeros((8, 2), dtype=np.uint64), gen=0, strip_rows=16, speed=0)
    with pytest.raises(ProtocolError, match="halo of 2 words, the board has 1"):
        upper.on_halo(wire.on("up")[-1][0], wire.on("up")[-1][1], gen=0, on_conflict=list)


def test_the_reporter_paces_progress_and_frames_on_its_clock():
    wire, now = Wire(), [100.0]
    exchange = HaloExchange(node_id="pi-01", assign=assign(0, frame_every=1), publish=wire)
    report = StripReporter(
        node_id="pi-01",
        exchange=exchange,
        stats=StripStats(),
        publish=wire,
        clock=lambda: now[0],
        gen=0,
    )
    board = Board(4, rows(16, 0), 0)
    report.progress(board)
    report.progress(board)  # within the second: not again
    report.progress(board, force=True)
    now[0] += 1.0
    report.progress(Board(8, rows(16, 0), 0))
    sent = [life.decode_progress(p) for _t, p in wire.on("progress")]
    assert [p.gen for p in sent] == [4, 4, 8] and sent[-1].rate == pytest.approx(4.0)
    report.frame(board)
    report.frame(Board(5, rows(16, 0), 0))  # two strips: 15 a second at most
    now[0] += 0.1
    report.frame(Board(6, rows(16, 0), 0))
    assert len(wire.on("frame")) == 2
    assert report.checkpoint_due(100, 4) and not report.checkpoint_due(104, 4)
    assert report.checkpoint_due(1000, 4)  # the last generation
    report.checkpoint(board)
    assert wire.sent[-1][2] == 1  # checkpoints go at QoS 1
