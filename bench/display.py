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
import os
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
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials

TARGET_CPU = 25.0
TARGET_FPS_ROOM, TARGET_FPS_THOUSANDS = 60.0, 30.0  # the lab's 240 tiles; a room in groups
ANCHOR_FULL_REDRAW_FPS = 110.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=240)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--fps", type=int, default=60)
    parser.add_argument("--size", default="1920x1080")
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))

    with tempfile.TemporaryDirectory(prefix="piswarm-bench-") as tmp:
        root = Path(tmp)
        store = UserStore(root / "users")
        ids = sim_node_ids(args.nodes)
        store.add_nodes(ids)
        broker = BrokerProcess(users=store, state_dir=root / "broker", die_with_parent=True)
        broker.start()
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

        def measure(app: DisplayApp) -> bool:
            now = time.monotonic()
            # Until the window opens, wait for the whole fleet; once it is open, measure
            # nothing but the display (a summary per frame would cost it ~10% of a core).
            if "start" not in window and model.summary(time.time()).live == args.nodes:
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
            return now - window.get("start", now) < args.seconds + 120

        try:
            app.run(on_frame=measure)
        finally:
            feed.stop()
            sim.terminate()
            sim.wait(30)
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
