"""Display benchmark: the kiosk at 1920x1080 while simulated nodes report at 1 Hz.

    ./run bench display [--nodes 240] [--seconds 60] [--fps 60] [--size 1920x1080]

mosquitto and `piswarm sim` run as their own processes; the display runs here, in this
process's main thread, on the SDL dummy driver (no screen needed). Reports frames per
second and the CPU used by this process (the display and its MQTT feed) while the fleet
updates, against the issues' targets (240 nodes as tiles: >= 60 fps; thousands, shown in
groups: >= 30 fps; both <= 25% of one core) and the naive full redraw measured on these
machines (~110 fps uncapped, i.e. ~9 ms a frame).
"""

import argparse
import json
import multiprocessing
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")

import psutil

from broker.runner import BrokerProcess
from broker.users import UserStore
from head.config import DisplayOptions
from head.display.app import DisplayApp
from head.display.cluster import ClusterModel
from head.display.cluster_scene import ClusterScene
from head.display.feed import ClusterFeed
from piswarm import protocol
from piswarm.client import MqttClient
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from piswarm.protocol.nodes import NodeOnline, Telemetry, Throttle

TARGET_CPU = 25.0
TARGET_FPS_ROOM, TARGET_FPS_THOUSANDS = 60.0, 30.0  # the lab's 240 tiles; a room in groups
ANCHOR_FULL_REDRAW_FPS = 110.0
SETTLE = 5.0  # seconds from the whole fleet online to the window (the kiosk lays it out)


def replay(settings: BrokerSettings, ids: list[str]) -> None:
    """The readings of ``ids`` at 1 Hz each, spread over the second, from one client
    (the admin login): the kiosk's load without the simulated fleet's CPU beside it.
    Each node's birth first, retained, as its agent would."""
    client = MqttClient(settings, role="bench-replay").connect(10.0)
    for node in ids:
        birth = NodeOnline(
            node=node,
            ts=time.time(),
            host="replay",
            version="bench",
            cores=4,
            model="replay",
            telemetry_interval=1.0,
            simulated=True,
        )
        client.publish(topics.node_status(node), protocol.encode(birth), qos=0, retain=True)
    # Each reading as the protocol encodes it, written by json.dumps (a sixth of encode()'s
    # cost): the publisher must weigh little beside the kiosk on a small machine.
    reading = protocol.encode(
        Telemetry(
            node=ids[0],
            seq=0,
            ts=time.time(),
            temp_c=50.0,
            temp_source="simulated",
            throttle=Throttle.from_raw(0),
            cpu_percent=20.0,
            load=(0.5, 0.5, 0.5),
            mem_percent=20.0,
            freq_mhz=1500.0,
            uptime_s=60.0,
        )
    )
    body = json.loads(reading)
    rng = random.Random(1)
    temps = {node: rng.uniform(42.0, 75.0) for node in ids}
    seq = 0
    while True:
        started = time.monotonic()
        for i, node in enumerate(ids):
            temps[node] = min(90.0, max(30.0, temps[node] + rng.gauss(0.0, 0.15)))
            body.update(node=node, seq=seq, ts=time.time(), temp_c=round(temps[node], 2))
            payload = json.dumps(body, separators=(",", ":")).encode()
            client.publish(topics.node_telemetry(node), payload, qos=0)
            if i % 50 == 49:
                time.sleep(max(0.0, started + (i + 1) / len(ids) - time.monotonic()))
        seq += 1
        time.sleep(max(0.0, started + 1.0 - time.monotonic()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument(
        "--fleet",
        choices=["sim", "replay"],
        default="sim",
        help="sim: 'piswarm sim' (its processes share this machine's cores with the "
        "kiosk); replay: one light process publishing every node's readings",
    )
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="piswarm-bench-") as tmp:
        root = Path(tmp)
        store = UserStore(root / "users")
        ids = sim_node_ids(args.nodes)
        store.add_nodes(ids)
        broker = BrokerProcess(users=store, state_dir=root / "broker", die_with_parent=True)
        broker.start()
        if args.fleet == "sim":
            sim = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "piswarm",
                    "sim",
                    "--nodes",
                    str(args.nodes),
                    "--interval",
                    "1",
                    "--workers",
                    "0",
                    "--broker-host",
                    "127.0.0.1",
                    "--broker-port",
                    str(broker.port),
                    "--log-level",
                    "WARNING",
                ],
                env={**os.environ, "PISWARM_BROKER_DIR": str(store.root)},
            )
        else:
            admin = Credentials.load(store.credentials_path("admin"))
            settings = BrokerSettings(host="127.0.0.1", port=broker.port, credentials=admin)
            spawn = multiprocessing.get_context("spawn")
            sim = spawn.Process(target=replay, args=(settings, ids), daemon=True)
            sim.start()
        viewer = Credentials.load(store.credentials_path("viewer"))
        feed = ClusterFeed(
            settings=BrokerSettings(host="127.0.0.1", port=broker.port, credentials=viewer),
            role="bench-display",
        ).start()
        model = ClusterModel(expected=ids)
        scene = ClusterScene()
        app = DisplayApp(
            model=model,
            source=feed,
            scenes=[scene],
            options=DisplayOptions(size=(size[0], size[1]), fps=args.fps),
        )
        me = psutil.Process()
        window: dict[str, float] = {}
        began = time.monotonic()

        def measure(app: DisplayApp) -> bool:
            now = time.monotonic()
            # Until the window opens, wait for the whole fleet; once it is open, measure
            # nothing but the display (a summary per frame would cost it ~10% of a core).
            if "online" not in window and model.summary(time.time()).live == args.nodes:
                window["online"] = now  # then settle: the fleet's arrival is not the steady state
            if "start" not in window and now - window.get("online", now) >= SETTLE:
                window.update(
                    start=now,
                    frames=app.stats.frames,
                    cpu=sum(me.cpu_times()[:2]),
                    applied=model.stats.applied,
                )
            if "start" in window and now - window["start"] >= args.seconds:
                cpu_end = sum(me.cpu_times()[:2])
                window.update(
                    end=now,
                    frames_end=app.stats.frames,
                    cpu_end=cpu_end,
                    applied_end=model.stats.applied,
                )
                return False
            if "start" not in window:  # still waiting for the whole fleet
                return now - began < max(60.0, args.nodes / 20) + SETTLE
            return True

        try:
            app.run(on_frame=measure)
        finally:
            feed.stop()
            sim.terminate()
            if isinstance(sim, subprocess.Popen):
                sim.wait(30)
            else:
                sim.join(30)
            broker.stop()

    if "end" not in window:
        print(f"the fleet never came fully online ({model.summary(time.time()).live} live)")
        return 1
    seconds = window["end"] - window["start"]
    target_fps = TARGET_FPS_ROOM if args.nodes <= 240 else TARGET_FPS_THOUSANDS
    fps = (window["frames_end"] - window["frames"]) / seconds
    cpu = (window["cpu_end"] - window["cpu"]) / seconds * 100
    updates = (window["applied_end"] - window["applied"]) / seconds
    shown = f"in {len(scene.grid.groups)} groups" if scene.grid else "as tiles"
    print(
        f"display: {args.nodes} nodes at 1 Hz ({shown}), {args.size}, SDL dummy driver, "
        f"{seconds:.0f} s"
    )
    print(
        f"  updates      {updates:8.1f} msg/s applied to the model, "
        f"{model.stats.malformed} malformed, {feed.dropped} dropped"
    )
    print(
        f"  frame rate   {fps:8.1f} fps   {fps / target_fps:5.2f}x of target {target_fps:g} "
        f"(cap {args.fps})"
    )
    print(f"  CPU          {cpu:8.1f} % core {cpu / TARGET_CPU:5.2f}x of target {TARGET_CPU:g}")
    budget = 1000 / fps * cpu / 100
    print(
        f"  per frame    {budget:8.2f} ms CPU  {budget / (1000 / ANCHOR_FULL_REDRAW_FPS):5.2f}x "
        f"a naive full redraw ({1000 / ANCHOR_FULL_REDRAW_FPS:.1f} ms, ANCHORS.md)"
    )
    ok = fps >= target_fps * 0.98 and cpu <= TARGET_CPU
    print("  verdict      " + ("all targets met" if ok else "TARGET MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
