"""The agent's strip runner: real strip processes against a real broker."""

import time

import numpy as np

from node_agent.life_runner import LifeRunner
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import life as wire
from piswarm.protocol import topics


class HandClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assignment(job: str, gens: int, epoch: int = 1) -> bytes:
    """A one-strip 64 x 16 torus: it needs no neighbour, so it runs on its own."""
    assign = wire.StripAssign(
        job=job,
        epoch=epoch,
        strip=0,
        strips=1,
        row0=0,
        rows=16,
        width=64,
        height=16,
        wrap="torus",
        gen=0,
        gens=gens,
        halo=4,
        frame_every=0,
        checkpoint_every=gens,
        above=None,
        below=None,
        pace=0 if gens < 100 else 100,
    )
    return wire.encode_assign(assign, np.zeros((16, 1), dtype="<u8").tobytes())


def until(condition, timeout=30.0):
    """Call ``condition`` (which ticks the runner, as the agent's driver loop does) until it
    holds: a waiting strip starts only on a tick, so there is no event to wait on."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def make_runner(broker, users, clock):
    node = users.get("node-a")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(node.name, node.password)
    )
    return LifeRunner(
        node_id="node-a", settings=settings, max_strips=1, wait_limit=30.0, clock=clock
    )


def test_an_assignment_that_finds_the_slot_taken_waits_and_starts_when_it_frees(broker, users):
    clock = HandClock()
    runner = make_runner(broker, users, clock)
    topic = topics.node_life_assign("node-a")
    try:
        runner.on_message(topic, assignment("l1-first", gens=8))  # ends in a moment
        runner.on_message(topic, assignment("l1-next", gens=8))
        assert runner.waiting() == [("l1-next", 1, 0)] and runner.refused == 0
        runner.on_message(topic, assignment("l1-next", gens=8))  # QoS 1 twice: once
        assert runner.waiting() == [("l1-next", 1, 0)]

        def next_started():
            runner.tick()
            return runner.started == 2

        until(next_started)
        assert runner.waiting() == [] and runner.refused == 0
    finally:
        runner.stop()


def test_a_waiting_assignment_is_given_up_after_the_limit_or_replaced_by_a_newer_epoch(
    broker, users
):
    clock = HandClock()
    runner = make_runner(broker, users, clock)
    topic = topics.node_life_assign("node-a")
    try:
        runner.on_message(topic, assignment("l1-long", gens=100_000))  # paced: runs for long
        runner.on_message(topic, assignment("l1-other", gens=8, epoch=1))
        runner.on_message(topic, assignment("l1-other", gens=8, epoch=2))
        assert runner.waiting() == [("l1-other", 2, 0)]  # epoch 1 will never be wanted
        clock.now += 10
        runner.tick()
        assert runner.waiting() == [("l1-other", 2, 0)]
        clock.now += 25
        runner.tick()
        assert runner.waiting() == [] and runner.refused == 1
        assert runner.running() == [("l1-long", 1, 0)]
    finally:
        runner.stop()
    assert runner.running() == []
