"""A strip's pacing, with the clock passed in (no broker: the strip's MQTT edge is unused)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    assign = wire.StripAssign(
        job="l1-a",
        epoch=1,
        strip=0,
        strips=1,
        row0=0,
        rows=16,
        width=64,
        height=16,
        wrap="torus",
        gen=0,
        gens=1000,
        halo=16,
        frame_every=0,
        checkpoint_every=1000,
        above=None,
        below=None,
        pace=pace,
    )
    packed = np.zeros((16, 1), dtype="<u8").tobytes()
    return StripRun(
        node_id="pi-01",
        settings=BrokerSettings(host="localhost", port=1),
        assign=assign,
        packed=packed,
        clock=clock,
    )


@pytest.mark.parametrize(
    ("halo", "pace", "left", "depth"),
    [
        (16, 0, 1000, 16),  # flat out: the full halo depth
        (16, 0, 5, 5),  # never past the last generation
        (16, 60, 1000, 4),  # 60 gen/s shown at 15 frames/s: 4 generations a round
        (16, 10, 1000, 1),  # slower than the frame rate: one at a time
        (4, 1000, 1000, 4),  # a fast pace is still limited by the halo
    ],
)
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
    assign = wire.StripAssign(
        job="l1-a",
        epoch=1,
        strip=0,
        strips=2,
        row0=0,
        rows=16,
        width=64,
        height=32,
        wrap="dead",
        gen=0,
        gens=1000,
        halo=4,
        frame_every=0,
        checkpoint_every=1000,
        above=None,
        below=wire.StripRef(node="pi-02", strip=1),
    )
    packed = np.zeros((16, 1), dtype="<u8").tobytes()
    return StripRun(
        node_id="pi-01",
        settings=BrokerSettings(host="localhost", port=1),
        assign=assign,
        packed=packed,
        clock=clock,
        max_silence=3.0,
    )


def test_the_first_halo_is_asked_for_at_once_and_often_later_ones_after_a_second():
    # A neighbour that started first sent its first halo before this strip subscribed.
    clock = StepClock(0.01)
    first = neighbour_strip(clock)
    assert not first._await_halos([(1, "up", 0)], 4)  # nobody answers: gives up at 3 s
    assert 25 <= first.exchange.stats.wants_sent <= 31  # every 0.1 s from the start
    later = neighbour_strip(clock)
    later.stats.rounds = 5
    assert not later._await_halos([(1, "up", 20)], 4)
    assert 2 <= later.exchange.stats.wants_sent <= 3  # once a second


@pytest.mark.parametrize(
    ("strips", "per_s"), [(1, 15), (32, 15), (64, 7.5), (256, 1.875), (4096, 1)]
)
def test_frames_slow_down_when_many_strips_send_them(strips, per_s):
    assert wire.frame_interval(strips) == pytest.approx(1 / per_s)


def halo(side, rows, strip_rows, speed):
    return wire.Halo(
        job="l1-a",
        epoch=1,
        strip=0,
        gen=0,
        side=side,
        rows=rows,
        words=1,
        strip_rows=strip_rows,
        speed=speed,
    )


def test_the_quicker_strip_takes_rows_from_the_slower_half_the_gap_at_a_time():
    # 100 rows at 300 rows/s above, 100 at 100 below: equal time would be 150 / 50, so
    # the boundary moves half of the 50 rows the upper strip should take.
    upper, lower = halo("down", 64, 100, 300), halo("up", 64, 100, 100)
    assert wire.boundary_shift(upper, lower, 32, 8) == 25
    assert wire.boundary_shift(halo("down", 64, 100, 100), halo("up", 64, 100, 300), 32, 8) == -25


@pytest.mark.parametrize(
    ("upper", "lower", "why"),
    [
        (halo("down", 32, 100, 0), halo("up", 64, 100, 100), "a speed not yet measured"),
        (halo("down", 32, 100, 100), halo("up", 64, 100, 0), "a speed not yet measured"),
        (halo("down", 64, 1000, 101), halo("up", 64, 1000, 100), "under 1/128 of the strip"),
        (halo("down", 64, 100, 100), halo("up", 64, 100, 100), "balanced already"),
    ],
)
def test_boundaries_stay_put(upper, lower, why):
    assert wire.boundary_shift(upper, lower, 32, 8) == 0, why


def test_a_boundary_moves_no_further_than_the_rows_sent_and_half_the_givers_spare_rows():
    # The lower strip is 10x slower but sent only 5 rows beyond the depth of 32.
    assert wire.boundary_shift(halo("down", 64, 500, 1000), halo("up", 37, 500, 100), 32, 8) == 5
    # It sent 32 extra, but has only 20 rows above the minimum of 40: half of them go.
    assert wire.boundary_shift(halo("down", 40, 40, 1000), halo("up", 60, 60, 100), 32, 40) == 10


side_rows = st.integers(8, 4000)
speeds = st.integers(0, 10**9)


@given(
    side_rows,
    speeds,
    side_rows,
    speeds,
    st.integers(1, 64),
    st.integers(0, 128),
    st.integers(0, 128),
)
def test_both_neighbours_agree_and_a_move_never_breaks_the_limits(n_u, s_u, n_d, s_d, k, e_u, e_d):
    e_u, e_d = min(e_u, 2 * k, max(0, n_u - k)), min(e_d, 2 * k, max(0, n_d - k))
    if n_u < k or n_d < k:
        return
    upper, lower = halo("down", k + e_u, n_u, s_u), halo("up", k + e_d, n_d, s_d)
    move = wire.boundary_shift(upper, lower, k, k)
    # Seen from the other side (the roles swapped), the same boundary moves the other way.
    mirrored = wire.boundary_shift(
        halo("down", k + e_d, n_d, s_d), halo("up", k + e_u, n_u, s_u), k, k
    )
    assert mirrored == -move
    assert -e_u <= move <= e_d
    assert n_u + move >= k and n_d - move >= k
    if move and s_u and s_d:  # towards balance, and never past it
        before = n_d * s_u - n_u * s_d
        after = (n_d - move) * s_u - (n_u + move) * s_d
        assert abs(after) < abs(before) and (after == 0 or (after > 0) == (before > 0))
