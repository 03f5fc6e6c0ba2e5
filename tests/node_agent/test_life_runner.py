"""The agent's strip runner: real strip processes against a real broker."""

import json
import random
import threading

import numpy as np

from node_agent.agent import Agent, drive
from node_agent.identity import Identity
from node_agent.life_runner import ARRIVED_LIMIT, LifeRunner
from node_agent.sim import SimulatedPi
from piswarm import protocol
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import life as wire
from piswarm.protocol import topics
from tests.conftest import telemetry_of, until


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


def make_runner(broker, users, clock):
    node = users.get("node-a")
    settings = BrokerSettings(
        host="127.0.0.1", port=broker.port, credentials=Credentials(node.name, node.password)
    )
    return LifeRunner(
        node_id="node-a",
        settings=settings,
        max_strips=1,
        wait_limit=30.0,
        clock=clock,
        threaded=False,  # ticked here, on the test's thread
    )


def test_an_assignment_that_finds_the_slot_taken_waits_and_starts_when_it_frees(broker, users):
    clock = HandClock()
    runner = make_runner(broker, users, clock)
    topic = topics.node_life_assign("node-a")
    try:
        runner.on_message(topic, assignment("l1-first", gens=8))  # ends in a moment
        runner.on_message(topic, assignment("l1-next", gens=8))
        assert runner.waiting() == [] and runner.started == 0  # queued, nothing started yet
        runner.tick()
        assert runner.waiting() == [("l1-next", 1, 0)] and runner.refused == 0
        runner.on_message(topic, assignment("l1-next", gens=8))  # QoS 1 twice: once
        runner.tick()
        assert runner.waiting() == [("l1-next", 1, 0)]

        def next_started():
            runner.tick()  # as the runner's thread would: nothing signals a strip's exit
            return runner.started == 2

        until(next_started, "the waiting strip starting")
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
        runner.tick()
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


def test_a_flood_of_assignments_is_bounded_and_counted(broker, users):
    runner = make_runner(broker, users, HandClock())
    topic = topics.node_life_assign("node-a")
    for epoch in range(1, ARRIVED_LIMIT + 11):
        runner.on_message(topic, assignment("l1-flood", gens=8, epoch=epoch))
    assert runner.refused == 10  # nothing started: paho's thread only queues
    assert runner.started == 0
    runner.stop()


class Gate:
    """A test-only slow start: each strip's process starts only when the test says."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, process):
        self.entered.set()
        assert self.release.wait(60), "the test never let the strip start"
        process.start()


def test_starting_a_new_epoch_holds_up_neither_paho_nor_the_agents_telemetry(
    broker, users, recorder
):
    """The strip runner used to start and end processes on paho's thread, under a lock:
    while a new epoch's strip was starting, no message reached the agent and its
    telemetry stood still. Here a strip's start is held until the test lets it go."""
    creds = Credentials.load(users.credentials_path("node-a"))
    settings = BrokerSettings(host="127.0.0.1", port=broker.port, credentials=creds)
    gate = Gate()
    life = LifeRunner(node_id="node-a", settings=settings, max_strips=1, spawn=gate)
    wake, stop = threading.Event(), threading.Event()
    agent = Agent(
        node_id="node-a",
        settings=settings,
        sensors=SimulatedPi(random.Random(1)),
        identity=Identity("h", None, 4, "m"),
        interval=0.2,
        wake=wake.set,
        life=life,
    )
    watch, admin = recorder(), recorder("admin")
    agent.start()
    driver = threading.Thread(target=drive, args=([agent], stop, wake))
    driver.start()
    try:
        assert agent.connected.wait(10)
        admin.publish(topics.node_life_assign("node-a"), assignment("l1-a", gens=8, epoch=1))
        assert gate.entered.wait(10)  # the strip's start is held
        admin.publish(topics.node_life_assign("node-a"), assignment("l1-a", gens=8, epoch=2))
        # Meanwhile the agent answers a ping (paho's thread) and reports (the driver's).
        seen = watch.wait_for(telemetry_of("node-a"))
        later = json.loads(seen.payload)["seq"] + 3
        watch.wait_for(telemetry_of("node-a", min_seq=later))
        ping = protocol.Command(cmd="ping", id="p1")
        admin.publish(topics.node_cmd("node-a"), protocol.encode(ping))
        admin.wait_for(lambda m: m.topic == topics.node_pong("node-a"))
        assert life.started == 0
        gate.release.set()
        until(
            lambda: life.running() == [("l1-a", 2, 0)] or life.started == 2,
            "the new epoch's strip starting",
        )
        assert agent.mqtt.stats.callback_errors == 0 and life.errors == 0
    finally:
        gate.release.set()
        stop.set()
        wake.set()
        driver.join()
        agent.stop()
    assert life.running() == []
