"""Telemetry benchmark: a simulated fleet through a real mosquitto, measured end to end.

    ./run bench telemetry [--nodes 240] [--seconds 60] [--interval 1]

Starts mosquitto with the project's config, `piswarm sim` as its own process and a viewer
subscriber here. Over the measuring window it reports end-to-end latency (the payload's
`ts`, taken just before publishing, to the subscriber's receive time), CPU use of the sim
process and of mosquitto, and lost messages (gaps in each node's `seq`), each against the
issue's target and the figure measured on these machines (ANCHORS.md).
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
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
from paho.mqtt.enums import CallbackAPIVersion

from broker.runner import BrokerProcess
from broker.users import UserStore
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import end_loop

ANCHOR = {"p50_ms": 0.3, "p99_ms": 2.1, "sim_cpu": 4.7, "broker_cpu": 1.1}
TARGET = {"p99_ms": 50.0, "sim_cpu": 15.0, "lost": 0}


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="piswarm-bench-") as tmp:
        root = Path(tmp)
        store = UserStore(root / "users")
        ids = sim_node_ids(args.nodes)
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
        sim = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "piswarm",
                "sim",
                "--nodes",
                str(args.nodes),
                "--interval",
                str(args.interval),
                "--broker-host",
                "127.0.0.1",
                "--broker-port",
                str(broker.port),
                "--log-level",
                "WARNING",
            ],
            env={**os.environ, "PISWARM_BROKER_DIR": str(store.root)},
        )
        try:
            deadline = time.monotonic() + 60
            while len(online) < args.nodes:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only {len(online)}/{args.nodes} nodes came online")
                time.sleep(0.1)
            time.sleep(3 * args.interval)  # settle: connect bursts are not the steady state
            sim_proc, broker_proc = psutil.Process(sim.pid), psutil.Process(broker.pid)
            sim_cpu0, broker_cpu0 = cpu_seconds(sim_proc), cpu_seconds(broker_proc)
            rss = sim_proc.memory_info().rss
            start = time.time()
            time.sleep(args.seconds)
            end = time.time()
            sim_cpu = (cpu_seconds(sim_proc) - sim_cpu0) / (end - start) * 100
            broker_cpu = (cpu_seconds(broker_proc) - broker_cpu0) / (end - start) * 100
        finally:
            sim.terminate()
            sim.wait(30)
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
    lost += sum(1 for n in ids if n not in seqs) * int(args.seconds / args.interval)
    expected = args.nodes * args.seconds / args.interval
    q = statistics.quantiles(latencies, n=100)
    p50, p99 = statistics.median(latencies), q[98]

    print(
        f"telemetry: {args.nodes} nodes every {args.interval:g}s for {args.seconds:g}s "
        f"through mosquitto (loopback)"
    )
    print(
        f"  messages     {len(latencies)} received of ~{expected:.0f} expected, lost {lost} "
        f"(target {TARGET['lost']})"
    )
    rows = [
        ("latency p50", p50, "ms", None, ANCHOR["p50_ms"]),
        ("latency p99", p99, "ms", TARGET["p99_ms"], ANCHOR["p99_ms"]),
        ("sim CPU", sim_cpu, "% core", TARGET["sim_cpu"], ANCHOR["sim_cpu"]),
        ("mosquitto CPU", broker_cpu, "% core", None, ANCHOR["broker_cpu"]),
    ]
    for name, value, unit, target, anchor in rows:
        vs_target = f"{value / target:5.2f}x of target {target:g}" if target else " " * 22
        print(
            f"  {name:<13}{value:8.2f} {unit:<7}{vs_target}   {value / anchor:5.2f}x anchor "
            f"({anchor:g})"
        )
    print(f"  sim RSS      {rss / 2**20:8.1f} MiB   (anchor 31 MB for 240 clients)")
    ok = lost == 0 and p99 <= TARGET["p99_ms"] and sim_cpu <= TARGET["sim_cpu"]
    print("  verdict      " + ("all targets met" if ok else "TARGET MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
