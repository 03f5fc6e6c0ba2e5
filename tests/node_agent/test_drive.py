"""The driver loop that ticks agents: on time, coalesced, stoppable, never spinning."""

import threading
import time

from node_agent.agent import drive


class FakeAgent:
    """Just the part of an Agent that ``drive`` uses."""

    def __init__(self, interval, offset=0.0):
        self.interval = interval
        self.next_due = time.monotonic() + offset
        self.ticks = 0
        self.sent = 0
        self.fatal = None
        self.wants_tick = False
        self.sent_out_of_period = threading.Event()

    def tick(self, now):
        self.ticks += 1
        if self.wants_tick:
            self.wants_tick = False
            self.sent += 1
            self.sent_out_of_period.set()
        if now >= self.next_due:
            self.sent += 1
            self.next_due += self.interval
        return self.next_due


def run_for(agents, seconds, wake=None, **kw):
    stop, wake = threading.Event(), wake or threading.Event()
    timer = threading.Timer(seconds, lambda: (stop.set(), wake.set()))
    timer.start()
    drive(agents, stop, wake, **kw)
    timer.cancel()


def test_each_agent_is_ticked_once_per_period_not_on_every_wake():
    agents = [FakeAgent(0.1, offset=i * 0.1 / 50) for i in range(50)]
    run_for(agents, 1.0)
    for agent in agents:
        assert 9 <= agent.sent <= 12
        assert agent.ticks <= agent.sent + 2  # no busy ticking of agents that are not due


def test_agents_due_within_a_slot_do_not_spin():
    agents = [FakeAgent(0.5, offset=0.001 * i) for i in range(5)]
    run_for(agents, 0.3, slot=0.05)
    assert all(a.sent == 1 and a.ticks <= 2 for a in agents)


def test_wake_delivers_out_of_period_requests_and_fatal_stops():
    agents = [FakeAgent(10.0, offset=10.0) for _ in range(3)]
    stop, wake = threading.Event(), threading.Event()

    def poke():
        agents[1].wants_tick = True
        wake.set()
        assert agents[1].sent_out_of_period.wait(5)
        agents[2].fatal = "replaced"
        wake.set()

    threading.Thread(target=poke).start()
    started = time.monotonic()
    drive(agents, stop, wake)
    assert time.monotonic() - started < 5  # returned on the fatal error, not at the period
    assert [a.sent for a in agents] == [0, 1, 0]
