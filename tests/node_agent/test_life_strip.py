"""A strip's pacing, with the clock passed in (no broker: the strip's MQTT edge is unused)."""

import numpy as np
import pytest

from node_agent.life_strip import StripRun
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import life as wire


class StepClock:
    """Every reading moves time on by ``tick`` seconds."""

    def __init__(self, tick: float) -> None:
        self.now = 100.0
        self.tick = tick
        self.readings = 0

    def __call__(self) -> float:
        self.now += self.tick
        self.readings += 1
        return self.now


def strip(pace: float, clock: StepClock) -> StripRun:
    assign = wire.StripAssign(job="l1-a", epoch=1, strip=0, strips=1, row0=0, rows=16, width=64,
                              height=16, wrap="torus", gen=0, gens=1000, halo=16, frame_every=0,
                              checkpoint_every=1000, above=None, below=None,
                              pace=pace)  # fmt: skip
    packed = np.zeros((16, 1), dtype="<u8").tobytes()
    return StripRun(node_id="pi-01", settings=BrokerSettings(host="localhost", port=1),
                    assign=assign, packed=packed, clock=clock)  # fmt: skip


@pytest.mark.parametrize(("halo", "pace", "left", "depth"), [
    (16, 0, 1000, 16),  # flat out: the full halo depth
    (16, 0, 5, 5),  # never past the last generation
    (16, 60, 1000, 4),  # 60 gen/s shown at 15 frames/s: 4 generations a round
    (16, 10, 1000, 1),  # slower than the frame rate: one at a time
    (4, 1000, 1000, 4),  # a fast pace is still limited by the halo
])  # fmt: skip
def test_round_depth_follows_the_pace(halo, pace, left, depth):
    assert wire.round_depth(halo, pace, left) == depth


def test_a_paced_strip_waits_until_its_generation_is_due():
    clock = StepClock(0.01)
    run = strip(60.0, clock)
    start = clock()
    run._pace_mark = (start, 0)
    run.gen = 30  # 30 generations at 60 a second are due half a second after the start
    run._keep_pace()
    assert 0.5 <= clock.now - start <= 0.52
    before = clock.readings
    run._keep_pace()  # already due: no waiting
    assert clock.readings - before == 1


def test_an_unpaced_strip_never_waits():
    clock = StepClock(0.01)
    run = strip(0.0, clock)
    run.gen = 10_000
    before = clock.readings
    run._keep_pace()
    assert clock.readings == before


def neighbour_strip(clock: StepClock) -> StripRun:
    assign = wire.StripAssign(job="l1-a", epoch=1, strip=0, strips=2, row0=0, rows=16, width=64,
                              height=32, wrap="dead", gen=0, gens=1000, halo=4, frame_every=0,
                              checkpoint_every=1000, above=None,
                              below=wire.StripRef(node="pi-02", strip=1))  # fmt: skip
    packed = np.zeros((16, 1), dtype="<u8").tobytes()
    return StripRun(node_id="pi-01", settings=BrokerSettings(host="localhost", port=1),
                    assign=assign, packed=packed, clock=clock, max_silence=3.0)  # fmt: skip


def test_the_first_halo_is_asked_for_at_once_and_often_later_ones_after_a_second():
    # A neighbour that started first sent its first halo before this strip subscribed.
    clock = StepClock(0.01)
    first = neighbour_strip(clock)
    assert not first._await_halos([(1, "up", 0)], 4)  # nobody answers: gives up at 3 s
    assert 25 <= first.stats.wants_sent <= 31  # every 0.1 s from the start
    later = neighbour_strip(clock)
    later.stats.rounds = 5
    assert not later._await_halos([(1, "up", 20)], 4)
    assert 2 <= later.stats.wants_sent <= 3  # once a second


def test_glibc_is_asked_to_keep_the_kernels_temporaries():
    from node_agent.life_strip import keep_heap_memory

    assert keep_heap_memory()  # this machine has glibc, as Raspberry Pi OS does


@pytest.mark.parametrize(("strips", "per_s"), [(1, 15), (32, 15), (64, 7.5), (256, 1.875),
                                               (4096, 1)])  # fmt: skip
def test_frames_slow_down_when_many_strips_send_them(strips, per_s):
    assert wire.frame_interval(strips) == pytest.approx(1 / per_s)
