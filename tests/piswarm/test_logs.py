"""Warnings of one kind are rate-limited; the first let through afterwards says how many
were not logged. Driven by a hand clock."""

import io
import logging

from piswarm.logs import Throttle
from piswarm.protocol.health import HEALTH_EVERY_S, HEALTH_MIN_GAP_S, HealthClock


class Hand:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def logger_with(throttle, name="t.throttle"):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(throttle)
    log = logging.getLogger(name)
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, out


def test_a_flood_of_one_warning_is_cut_to_a_burst_a_window_and_counted():
    clock = Hand()
    throttle = Throttle(burst=3, window=60.0, clock=clock)
    log, out = logger_with(throttle)
    for i in range(1000):
        log.warning("ignored malformed message on %s: %d", "piswarm/x", i)
    log.warning("another kind %d", 1)
    assert out.getvalue().count("ignored malformed") == 3
    assert "another kind 1" in out.getvalue()
    assert throttle.suppressed == 997
    clock.now = 59.9
    log.warning("ignored malformed message on %s: %d", "piswarm/x", 1000)
    assert out.getvalue().count("ignored malformed") == 3
    clock.now = 60.0
    log.warning("ignored malformed message on %s: %d", "piswarm/x", 1001)
    last = out.getvalue().splitlines()[-1]
    assert last == (
        "ignored malformed message on piswarm/x: 1001 [998 more like this were not logged]"
    )
    log.warning("ignored malformed message on %s: %d", "piswarm/x", 1002)
    assert out.getvalue().splitlines()[-1] == "ignored malformed message on piswarm/x: 1002"


def test_info_and_critical_are_never_held_back_and_kinds_are_bounded():
    clock = Hand()
    throttle = Throttle(burst=1, window=60.0, max_kinds=4, clock=clock)
    log, out = logger_with(throttle, "t.levels")
    for _ in range(10):
        log.info("job done")
        log.critical("broker gone")
    assert out.getvalue().count("job done") == 10
    assert out.getvalue().count("broker gone") == 10
    for i in range(100):  # f-strings make a kind per message: the table stays bounded
        log.warning(f"payload {i}")  # what careless code does
    assert len(throttle._kinds) == 4
    assert out.getvalue().count("payload") == 100


def test_health_goes_out_soon_after_a_change_and_regularly_without_one():
    clock = HealthClock()
    assert clock.due(0.0, (0, 0, 0, 0))  # the first
    assert not clock.due(1.0, (0, 0, 0, 0))
    assert not clock.due(1.0, (1, 0, 0, 0))  # changed, but too soon after the last
    assert clock.due(HEALTH_MIN_GAP_S, (1, 0, 0, 0))
    assert not clock.due(HEALTH_MIN_GAP_S + 1, (1, 0, 0, 0))
    assert clock.due(HEALTH_MIN_GAP_S + HEALTH_EVERY_S, (1, 0, 0, 0))  # unchanged, but due
