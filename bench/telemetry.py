"""Telemetry benchmark: a simulated fleet through a real mosquitto, measured end to end.

    ./run bench telemetry [--nodes 240] [--seconds 60] [--interval 1] [--baseline 240]

Starts mosquitto with the project's config, `piswarm sim` as its own process and a viewer
subscriber here. Over the measuring window it reports end-to-end latency (the payload's
`ts`, taken just before publishing, to the subscriber's receive time), CPU use of the sim
process and of mosquitto, and lost messages (gaps in each node's `seq`), each against the
issue's target and the figure measured on these machines (ANCHORS.md). Past 250 nodes the
sim runs in several processes: its CPU and memory are theirs together. With more nodes
than ``--baseline`` (240), the baseline fleet runs first, so the sim's CPU per node at
scale is compared on the same machine, in the same run.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from broker.runner import BrokerProcess
from broker.users import UserStore
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import end_loop

ANCHOR = {"p50_ms": 0.3, "p99_ms": 2.1, "sim_cpu": 4.7, "broker_cpu": 1.1}
TARGET = {"p99_ms": 50.0, "sim_cpu_240": 15.0, "lost": 0}


@dataclass
class Run:
    nodes: int
    seconds: float
    expected: float
    received: int
    lost: int
    p50: float
    p99: float
    sim_cpu: float  # % of one core, the sim and its shard processes together
    broker_cpu: float
    sim_rss: float  # MiB, all its processes
    processes: int
    online_s: float

    @property
    def per_100(self) -> float:
        """The sim's CPU per 100 nodes (what must not grow with the fleet)."""
        return self.sim_cpu / self.nodes * 100


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def family_cpu(proc: psutil.Process) -> tuple[float, float, int]:
    """CPU seconds, RSS bytes and process count of ``proc`` and its children."""
    cpu, rss, count = 0.0, 0.0, 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            times = p.cpu_times()
            cpu += times.user + times.system
            rss += p.memory_info().rss
            count += 1
        except psutil.NoSuchProcess:
            continue
    return cpu, rss, count


def measure(nodes: int, seconds: float, interval: float) -> Run:
    with tempfile.TemporaryDirectory(prefix="piswarm-bench-") as tmp:
        root = Path(tmp)
        store = UserStore(root / "users")
        ids = sim_node_ids(nodes)
        store.add_nodes(ids)
        broker = BrokerProcess(users=store, state_dir=root / "broker", die_with_parent=True).start()
        received: list[tuple[float, bytes]] = []
        lock = threading.Lock()
        online: set[str] = set()

        def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
            now = time.time()
            if msg.topic.endswith("/status"):
                if b'"online"' in msg.payload:
                    online.add(msg.topic.split("/")[2])
                return
            with lock:
                received.append((now, bytes(msg.payload)))

        viewer = store.get("viewer")
        sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench", protocol=mqtt.MQTTv5)
        sub.username_pw_set(viewer.name, viewer.password)
        sub.on_message = on_message
        sub.on_connect = lambda c, *_: c.subscribe(
            [("piswarm/nodes/+/telemetry", 0), ("piswarm/nodes/+/status", 1)]
        )
        sub.connect("127.0.0.1", broker.port)
        sub.loop_start()
        command = ["sim", "--nodes", str(nodes), "--interval", str(interval), "--workers", "0"]
        where = ["--broker-host", "127.0.0.1", "--broker-port", str(broker.port)]
        sim = subprocess.Popen(
            [sys.executable, "-m", "piswarm", *command, *where, "--log-level", "WARNING"],
            env={**os.environ, "PISWARM_BROKER_DIR": str(store.root)},
        )
        try:
            began = time.monotonic()
            deadline = began + max(60.0, nodes / 20)
            while len(online) < nodes:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(online)}/{nodes} nodes came online")
                time.sleep(0.1)
            online_s = time.monotonic() - began
            time.sleep(3 * interval)  # settle: connect bursts are not the steady state
            sim_proc, broker_proc = psutil.Process(sim.pid), psutil.Process(broker.pid)
            sim_cpu0, _rss, _n = family_cpu(sim_proc)
            broker_cpu0 = cpu_seconds(broker_proc)
            start = time.time()
            time.sleep(seconds)
            end = time.time()
            sim_cpu1, rss, processes = family_cpu(sim_proc)
            sim_cpu = (sim_cpu1 - sim_cpu0) / (end - start) * 100
            broker_cpu = (cpu_seconds(broker_proc) - broker_cpu0) / (end - start) * 100
        finally:
            sim.terminate()
            sim.wait(120)
            sub.disconnect()
            end_loop(sub)
            broker.stop()

    latencies: list[float] = []
    seqs: dict[str, list[int]] = {}
    for at, payload in received:
        body = json.loads(payload)
        if start <= body["ts"] < end:
            latencies.append((at - body["ts"]) * 1000)
            seqs.setdefault(body["node"], []).append(body["seq"])
    lost = sum(max(s) - min(s) + 1 - len(s) for s in seqs.values())
    lost += sum(1 for n in ids if n not in seqs) * int(seconds / interval)
    q = statistics.quantiles(latencies, n=100)
    return Run(
        nodes=nodes,
        seconds=seconds,
        expected=nodes * seconds / interval,
        received=len(latencies),
        lost=lost,
        p50=statistics.median(latencies),
        p99=q[98],
        sim_cpu=sim_cpu,
        broker_cpu=broker_cpu,
        sim_rss=rss / 2**20,
        processes=processes,
        online_s=online_s,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument(
        "--baseline",
        type=int,
        default=240,
        help="also run this many nodes first, for the sim's CPU per node (0: skip)",
    )
    args = parser.parse_args()

    base = None
    if args.baseline and args.baseline != args.nodes:
        base = measure(args.baseline, args.seconds, args.interval)
    run = measure(args.nodes, args.seconds, args.interval)
    for r in [b for b in (base,) if b is not None] + [run]:
        print(
            f"telemetry: {r.nodes} nodes every {args.interval:g}s for {r.seconds:g}s through "
            f"mosquitto (loopback); the sim in {r.processes} processes, all online in "
            f"{r.online_s:.1f} s"
        )
        print(
            f"  messages     {r.received} received of ~{r.expected:.0f} expected, lost {r.lost} "
            f"(target {TARGET['lost']})"
        )
        rows = [
            ("latency p50", r.p50, "ms", None, ANCHOR["p50_ms"]),
            ("latency p99", r.p99, "ms", TARGET["p99_ms"], ANCHOR["p99_ms"]),
            ("sim CPU", r.sim_cpu, "% core", None, ANCHOR["sim_cpu"]),
            ("  per 100", r.per_100, "% core", None, ANCHOR["sim_cpu"] / 2.4),
            ("mosquitto CPU", r.broker_cpu, "% core", None, ANCHOR["broker_cpu"]),
        ]
        for name, value, unit, target, anchor in rows:
            vs_target = f"{value / target:5.2f}x of target {target:g}" if target else " " * 22
            print(
                f"  {name:<13}{value:8.2f} {unit:<7}{vs_target}   {value / anchor:5.2f}x anchor "
                f"({anchor:g}, 240 clients)"
            )
        print(f"  sim RSS      {r.sim_rss:8.1f} MiB   (anchor 31 MB for 240 clients)")
    ok = run.lost == 0 and run.p99 <= TARGET["p99_ms"]
    if base is not None:
        ratio = run.per_100 / base.per_100
        print(
            f"sim CPU per node at {run.nodes}: {ratio:.2f}x of that at {base.nodes} "
            f"(target <= 1.00; this machine's noise ~0.1)"
        )
        ok = ok and base.lost == 0 and ratio <= 1.1
    elif run.nodes <= 240:
        ok = ok and run.sim_cpu <= TARGET["sim_cpu_240"]
    print("verdict: " + ("all targets met" if ok else "TARGET MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
