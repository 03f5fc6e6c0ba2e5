"""The driver loop that ticks agents: on time, coalesced, stoppable, never spinning.

It runs on a hand clock: waiting for the next due time moves the clock there at once, so
the counts below are exact however busy the machine is."""

import threading

from node_agent.agent import drive


class HandClock:
    """A clock that only moves when the loop waits; it stops the loop at ``until``."""

    def __init__(self, stop, until=float("inf")):
        self.now = 0.0
        self.stop = stop
        self.until = until
        self.waits = 0

    def __call__(self):
        return self.now

    def wait(self, event, timeout):
        """As ``event.wait(timeout)``, with nobody to set the event: time passes."""
        self.waits += 1
        if event.is_set():
            return True
        self.now = min(self.until, self.now + timeout)
        if self.now >= self.until:
            self.stop.set()
        return False


class FakeAgent:
    """Just the part of an Agent that ``drive`` uses."""

    def __init__(self, interval, offset=0.0):
        self.interval = interval
        self.next_due = offset
        self.ticks = 0
        self.sent = 0
        self.fatal = None
        self.wants_tick = False

    def tick(self, now):
        self.ticks += 1
        if self.wants_tick:
            self.wants_tick = False
            self.sent += 1
        if now >= self.next_due:
            self.sent += 1
            self.next_due += self.interval
        return self.next_due


def run_for(agents, seconds, **kw):
    stop, wake = threading.Event(), threading.Event()
    clock = HandClock(stop, until=seconds)
    drive(agents, stop, wake, clock=clock, wait=clock.wait, **kw)
    return clock


def test_each_agent_is_ticked_once_per_period_not_on_every_wake():
    agents = [FakeAgent(0.1, offset=i * 0.1 / 50) for i in range(50)]
    clock = run_for(agents, 1.0)
    for agent in agents:
        # at 0.0, 0.1, ... 0.9 after its offset, and at 1.0 if that falls within the
        # last wake-up's slot
        assert 10 <= agent.sent <= 11
        assert agent.ticks <= agent.sent + 1  # no busy ticking of agents that are not due
    assert clock.waits <= 1.0 / 0.02  # one wake-up a slot of 20 ms, not one per send (500)


def test_agents_due_within_a_slot_do_not_spin():
    agents = [FakeAgent(0.5, offset=0.001 * i) for i in range(5)]
    clock = run_for(agents, 0.3, slot=0.05)
    assert all(a.sent == 1 and a.ticks <= 2 for a in agents)
    assert clock.waits <= 3


def test_wake_delivers_out_of_period_requests_and_fatal_stops():
    """Another thread wakes the loop; time stands still, so only a wake-up can end it."""
    agents = [FakeAgent(10.0, offset=10.0) for _ in range(3)]
    stop, wake = threading.Event(), threading.Event()
    ticked = threading.Event()
    agents[1].tick = lambda now, tick=agents[1].tick: (ticked.set(), tick(now))[1]

    def woken(event, _timeout):
        assert event.wait(30), "the loop waited on, past a fatal error"
        return True

    def poke():
        agents[1].wants_tick = True
        wake.set()
        assert ticked.wait(30)
        agents[2].fatal = "replaced"
        wake.set()

    poker = threading.Thread(target=poke)
    ticked.clear()
    poker.start()
    drive(agents, stop, wake, clock=lambda: 0.0, wait=woken)
    poker.join()
    assert [a.sent for a in agents] == [0, 1, 0]
