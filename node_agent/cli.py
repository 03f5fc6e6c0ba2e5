"""``piswarm agent`` (the real node) and ``piswarm sim`` (a simulated fleet)."""

import argparse
import logging
import threading
from pathlib import Path
from typing import Any

from piswarm.flags import add_broker_flags, real, whole
from piswarm.fleet import MAX_SIM_NODES, MAX_WORKERS
from piswarm.signals import stop_on_signals

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    agent = sub.add_parser("agent", help="run the node agent on this machine")
    agent.add_argument("--config", type=Path, help="agent TOML file (see node_agent/config.py)")
    agent.add_argument("--node-id", help="this node's id (default: hostname)")
    agent.add_argument(
        "--interval", type=real(0.05, 3600, unit=" s"), help="seconds between telemetry (default 5)"
    )
    agent.add_argument("--lock-dir", type=Path, help="where the pidfile lock lives")
    agent.add_argument("--credentials", type=Path, help="credentials file from 'broker users'")
    agent.add_argument(
        "--workers",
        type=whole(0, MAX_WORKERS),
        metavar="N",
        help="sieve processes (default: cores - 1, at least 1; 0: telemetry only)",
    )
    agent.add_argument(
        "--backend",
        choices=["auto", "numpy", "primesieve"],
        help="sieve: libprimesieve when installed (auto), or numpy",
    )
    add_broker_flags(agent)
    agent.set_defaults(handler=run_agent)

    sim = sub.add_parser("sim", help="run a simulated fleet of Pis (250 to a process)")
    sim.add_argument(
        "--nodes", type=whole(1, MAX_SIM_NODES), default=240, help="how many nodes (default 240)"
    )
    sim.add_argument("--prefix", default="sim", help="node id prefix (default 'sim')")
    sim.add_argument(
        "--interval", type=real(0.05, 3600, unit=" s"), default=5.0, help="telemetry period in s"
    )
    sim.add_argument(
        "--seed", type=whole(0, 2**63 - 1), default=1, help="random seed of the sensors"
    )
    sim.add_argument(
        "--workers",
        type=whole(0, MAX_WORKERS),
        default=1,
        metavar="N",
        help="sieve processes for real prime-search work, shared by the nodes of the first "
        "process (the first 250; default 1; 0: telemetry only)",
    )
    sim.add_argument(
        "--life-nodes",
        type=whole(0, MAX_SIM_NODES),
        default=0,
        metavar="N",
        help="the first N nodes (at most 250) also run a Life strip each, in a process of "
        "its own (default 0)",
    )
    sim.add_argument(
        "--users-dir",
        type=Path,
        help="broker users directory with the nodes' credentials "
        "(default $PISWARM_BROKER_DIR or ~/.config/piswarm/broker)",
    )
    add_broker_flags(sim)
    sim.set_defaults(handler=run_sim)


QUEUED_BLOCKS = 2
"""Blocks a node holds beyond one per worker: a worker that finishes a block starts a
queued one at once while its request for more goes to the coordinator and back. That
round trip took 25 ms median and 50 ms p90 here with both cores sieving, as long as a 1e7
block takes; one queued block would leave no margin."""


def run_agent(args: argparse.Namespace) -> int:
    from node_agent.agent import Agent, drive
    from node_agent.config import load_agent_config
    from node_agent.errors import AgentError
    from node_agent.identity import host_identity
    from node_agent.life_runner import LifeRunner
    from node_agent.runner import Slots, Workers, WorkRunner
    from node_agent.sensors import HostSensors
    from piswarm import __version__
    from piswarm.errors import ConfigError
    from piswarm.heap import keep_heap_memory
    from piswarm.lock import PidLock
    from piswarm.sieve_backends import backend_name

    config = load_agent_config(
        config_file=args.config,
        node_id=args.node_id,
        telemetry_interval=args.interval,
        lock_dir=args.lock_dir,
        broker_host=args.broker_host,
        broker_port=args.broker_port,
        credentials_file=args.credentials,
        workers=args.workers,
        backend=args.backend,
    )
    if config.broker.credentials is None:
        raise ConfigError(
            "no broker credentials: set [broker] credentials in the config, "
            "PISWARM_CREDENTIALS, or --credentials (files come from 'piswarm broker users')"
        )
    wake = threading.Event()
    with PidLock(config.lock_dir, config.node_id):
        stop = stop_on_signals(wake)
        sensors = HostSensors(thermal_root=config.thermal_root, vcgencmd=config.vcgencmd)
        sensors.start()
        workers, runner, life = None, None, None
        if config.workers:
            life = LifeRunner(
                node_id=config.node_id, settings=config.broker, max_strips=config.workers
            )
            backend = backend_name(config.backend)  # fails here if it is missing
            keep_heap_memory()  # results from the workers arrive block after block
            workers = Workers(config.workers)
            workers.start(backend)
            runner = WorkRunner(
                node_id=config.node_id,
                workers=workers,
                slots=Slots(config.workers + QUEUED_BLOCKS),
                per_node=config.workers + QUEUED_BLOCKS,
                backend=backend,
                fault=config.fault,
            )
        agent = Agent(
            node_id=config.node_id,
            settings=config.broker,
            sensors=sensors,
            identity=host_identity(),
            interval=config.telemetry_interval,
            wake=wake.set,
            runner=runner,
            life=life,
            version=f"{__version__}+{config.build}" if config.build else __version__,
        )
        log.info(
            "agent %s: broker %s:%d, telemetry every %.1fs, %s",
            config.node_id,
            config.broker.host,
            config.broker.port,
            config.telemetry_interval,
            f"{config.workers} workers ({runner.backend})" if runner else "no work (workers 0)",
        )
        agent.start()
        try:
            drive([agent], stop, wake)
        finally:
            agent.stop()
            if workers is not None:
                workers.shutdown()
        if agent.fatal:
            raise AgentError(agent.fatal)
    log.info("agent %s stopped", config.node_id)
    return 0


def run_sim(args: argparse.Namespace) -> int:
    from node_agent.runner import Workers
    from node_agent.sim_fleet import FleetSpec, SimFleet
    from piswarm import paths
    from piswarm.errors import ConfigError
    from piswarm.fleet import sim_node_ids
    from piswarm.mqtt import BrokerSettings

    users_dir = args.users_dir or paths.broker_users_dir()
    node_ids = sim_node_ids(args.nodes, args.prefix)
    missing = [n for n in node_ids if not paths.credentials_file(users_dir, n).exists()]
    if missing:
        raise ConfigError(
            f"{len(missing)} simulated nodes have no credentials in {users_dir} "
            f"(first: {missing[0]}): run 'piswarm broker users add --count {args.nodes} "
            f"--prefix {args.prefix}' and reload the broker"
        )
    base = BrokerSettings.from_sources(host=args.broker_host, port=args.broker_port)
    spec = FleetSpec(
        users_dir=users_dir, host=base.host, port=base.port, interval=args.interval, seed=args.seed
    )
    wake = threading.Event()
    stop = stop_on_signals(wake)
    workers = Workers(args.workers) if args.workers else None
    try:
        fleet = SimFleet(
            node_ids, spec, workers=workers, life_nodes=args.life_nodes, stop=stop, wake=wake
        )
    except ValueError as exc:
        raise ConfigError(f"--life-nodes {args.life_nodes}: {exc}") from None
    try:
        fleet.start()
        fleet.run()
    finally:
        fleet.stop()
        if workers is not None:
            workers.shutdown()
    if fleet.fatal:
        raise ConfigError(fleet.fatal)
    return 0
