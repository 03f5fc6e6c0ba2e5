"""A simulated fleet: many Pis as real MQTT clients in one process.

Each simulated node is a real :class:`~node_agent.agent.Agent` (own client id, will, birth
and credentials) whose sensors are :class:`SimulatedPi`: a temperature that drifts slowly
around the node's own baseline, follows its load, and now and then runs hot enough to
throttle; rare under-voltage episodes, remembered "since boot" as on a real Pi.
"""

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from node_agent.agent import Agent, drive
from node_agent.identity import Identity
from node_agent.life_runner import LifeRunner
from node_agent.runner import Slots, Workers, WorkRunner
from node_agent.sensors import Reading
from piswarm.mqtt import BrokerSettings
from piswarm.protocol import Throttle

log = logging.getLogger(__name__)

_UNDER_VOLTAGE, _THROTTLED, _SOFT_LIMIT = 1 << 0, 1 << 2, 1 << 3


class SimulatedPi:
    """Plausible Raspberry Pi 4 readings, advanced by the time between reads."""

    def __init__(self, rng: random.Random, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.rng = rng
        self.clock = clock
        self.baseline = rng.uniform(42.0, 62.0)  # idle temperature of this desk's Pi
        self.temp = self.baseline + rng.uniform(-2, 2)
        self.load = rng.uniform(0.0, 1.5)
        self.target_load = self.load
        self.under_voltage_left = 0
        self.since_boot = 0
        self.started = clock()
        self.last = self.started
        self.freq = 1500.0

    def _advance(self, dt: float) -> None:
        rng = self.rng
        if rng.random() < min(1.0, dt / 120.0):  # a new workload every ~2 minutes
            self.target_load = rng.choice([0.2, 0.5, 1.0, 2.0, 3.5, 4.0])
        self.load += (self.target_load - self.load) * min(1.0, dt / 20.0)
        hot = self.baseline + 6.0 * self.load  # a busy Pi without a fan reaches ~80 C
        alpha = min(1.0, dt / 30.0)  # the SoC's thermal time constant, ~30 s
        self.temp += (hot - self.temp) * alpha + rng.gauss(0.0, 0.15 * math.sqrt(dt))
        self.temp = max(30.0, min(90.0, self.temp))
        if self.under_voltage_left > 0:
            self.under_voltage_left -= 1
        elif rng.random() < 0.0005:  # a weak power supply, now and then
            self.under_voltage_left = rng.randint(1, 4)

    def read(self) -> Reading:
        now = self.clock()
        self._advance(max(0.0, now - self.last))
        self.last = now
        raw = 0
        if self.under_voltage_left:
            raw |= _UNDER_VOLTAGE
        if self.temp >= 80.0:
            raw |= _THROTTLED | _SOFT_LIMIT
        self.since_boot |= raw
        raw |= self.since_boot << 16
        self.freq = 1000.0 if raw & _THROTTLED else 1500.0 if self.load > 0.3 else 600.0
        return Reading(
            temp_c=self.temp,
            temp_source="simulated",
            throttle=Throttle.from_raw(raw),
            cpu_percent=min(100.0, self.load * 25.0),
            load=(self.load, self.load * 0.9, self.load * 0.8),
            mem_percent=min(100.0, 18.0 + self.load * 4.0),
            freq_mhz=self.freq,
            uptime_s=3600.0 + now - self.started,
        )


def build_fleet(
    node_ids: Sequence[str],
    settings_for: Callable[[str], BrokerSettings],
    *,
    interval: float,
    seed: int = 1,
    wake: Callable[[], None] = lambda: None,
    clock: Callable[[], float] = time.monotonic,
    host: str = "simulated",
    workers: Workers | None = None,
    backend: str = "numpy",
    life_nodes: int = 0,
) -> list[Agent]:
    """One :class:`Agent` per node id, each with its own simulated sensors.

    With ``workers``, every node also takes prime-search blocks, one at a time, computed
    for real in that shared pool: the nodes take turns on ``workers.count + 1`` slots.
    The first ``life_nodes`` nodes also run a Life strip each, for real, each in its own
    process (a room's worth would not fit on one machine).
    """
    slots = Slots(workers.count + 1) if workers is not None else None

    def runner_for(node_id: str) -> WorkRunner | None:
        if workers is None or slots is None:
            return None
        return WorkRunner(
            node_id=node_id, workers=workers, slots=slots, per_node=1, backend=backend, clock=clock
        )

    return [
        Agent(
            node_id=node_id,
            settings=settings_for(node_id),
            sensors=SimulatedPi(random.Random(f"{seed}:{node_id}"), clock=clock),
            identity=Identity(host=host, ip=None, cores=4, model="Raspberry Pi 4 (simulated)"),
            interval=interval,
            simulated=True,
            clock=clock,
            wake=wake,
            runner=runner_for(node_id),
            life=LifeRunner(node_id=node_id, settings=settings_for(node_id), max_strips=1)
            if i < life_nodes
            else None,
        )
        for i, node_id in enumerate(node_ids)
    ]


def run_fleet(
    agents: Sequence[Agent],
    stop: threading.Event,
    wake: threading.Event,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Connect every agent, spread their periods evenly, tick until ``stop``, shut down."""
    now = clock()
    count = max(1, len(agents))
    try:
        for i, agent in enumerate(agents):
            # Stagger the first period so 240 nodes at 1 Hz send one message every ~4 ms,
            # not 240 in a burst every second.
            agent.start(first_due=now + agent.interval * (i + 1) / count)
        log.info("simulated fleet of %d nodes started", len(agents))
        drive(agents, stop, wake, clock=clock)
    finally:
        for agent in agents:
            agent.begin_stop()
        deadline = time.monotonic() + 3.0  # one wait for all the goodbyes, not one each
        for agent in agents:
            agent.end_session(deadline)
        # Joining a paho thread can take up to a second (it may be mid-reconnect): join
        # them all at once.
        with ThreadPoolExecutor(max_workers=max(1, min(256, len(agents)))) as pool:
            list(pool.map(Agent.finish_stop, agents))
        log.info(
            "simulated fleet stopped: %d telemetry messages sent, %d periods missed, "
            "%d not sent while disconnected",
            sum(a.stats.telemetry_sent for a in agents),
            sum(a.stats.periods_missed for a in agents),
            sum(a.stats.telemetry_dropped for a in agents),
        )
