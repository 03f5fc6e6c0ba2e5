"""Game of Life benchmark (issue 5): run on demand, ratios against ANCHORS.md's figures.

    python -m bench.life                 # kernel, then 2 agents vs 1 through the broker
    python -m bench.life --only kernel

Kernel: the bit-packed numpy step against the naive np.roll version and against
``bgolly -a QuickLife`` (Debian ``golly``) on a 4096 x 4096 random torus; targets >= 15x
naive and >= 1x QuickLife. Distributed: the same board for 1000 generations with one agent
and with two (one strip each), real broker and coordinator; target >= 85% parallel
efficiency while computing (start-up and the final checkpoint are printed apart), beside
the time model (half the one-strip computing time plus the exchange
latency divided by the halo depth) and the exchange latency p50/p99.
"""

import argparse
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.cluster import bench_cluster
from head.jobclient import JobClient
from piswarm import life
from piswarm.mqtt import end_loop
from piswarm.protocol import life as wire
from piswarm.protocol import topics
from piswarm.rle import format_rle

SIZE = 4096


def per_gen(fn: Callable[[int], object], gens: int) -> float:
    started = time.perf_counter()
    fn(gens)
    return (time.perf_counter() - started) / gens


def kernel() -> bool:
    cells = (np.random.default_rng(1).random((SIZE, SIZE)) < 0.5).astype(np.uint8)
    packed = life.pack(cells)
    life.step(packed, SIZE, "torus", 2)
    fast = statistics.median(
        per_gen(lambda g: life.step(packed, SIZE, "torus", g), 20) for _ in range(3)
    )

    def naive(gens: int) -> None:
        board = cells
        for _ in range(gens):
            board = life.reference_step(board)

    slow = statistics.median(per_gen(naive, 3) for _ in range(3))
    print(f"kernel, {SIZE} x {SIZE} random torus, one core")
    print(
        f"  bit-packed numpy   {fast * 1e3:8.2f} ms/gen  ({SIZE * SIZE / fast / 1e9:.2f} G cells/s)"
    )
    print(
        f"  naive np.roll      {slow * 1e3:8.2f} ms/gen  -> bit-packed is {slow / fast:5.1f}x "
        f"(target >= 15x: {'ok' if slow / fast >= 15 else 'UNDER TARGET'})"
    )
    ok = slow / fast >= 15
    bgolly = shutil.which("bgolly")
    if bgolly is None:
        print("  bgolly missing (apt-get install golly): QuickLife not measured")
        return ok
    with tempfile.TemporaryDirectory() as tmp:
        rle = Path(tmp) / "soup.rle"
        text = format_rle(cells)
        rle.write_text(
            f"#CXRLE Pos=-{SIZE // 2},-{SIZE // 2}\n"
            + text.replace("rule = B3/S23", f"rule = B3/S23:T{SIZE},{SIZE}")
        )
        times = []
        for gens in (10, 110):
            started = time.perf_counter()
            subprocess.run(
                [bgolly, "-a", "QuickLife", "-m", str(gens), "-q", str(rle)],
                check=True,
                capture_output=True,
            )
            times.append(time.perf_counter() - started)
    quick = (times[1] - times[0]) / 100
    print(
        f"  bgolly QuickLife   {quick * 1e3:8.2f} ms/gen  -> bit-packed is {quick / fast:5.2f}x "
        f"(target >= 1x: {'ok' if quick >= fast else 'UNDER TARGET'})"
    )
    return ok and quick >= fast


Report = tuple[float, wire.Progress]  # when it arrived, what it said


def compute_phase(reports: list[Report], gens: int) -> float:
    """From the moment the last strip started computing (its first report, at the start
    generation) to the moment the last one reached ``gens``: the exchange and compute,
    without process start-up, the assignment and the final checkpoint."""
    started: dict[int, float] = {}
    ended: dict[int, float] = {}
    for at, r in reports:
        if r.gen == 0:
            started.setdefault(r.strip, at)
        if r.gen >= gens:
            ended.setdefault(r.strip, at)
    return max(ended.values()) - max(started.values())


def _run(agents: int, gens: int, halo: int) -> tuple[float, list[Report]]:
    reports: list[Report] = []
    lock = threading.Lock()

    def keep(_c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with lock:
            reports.append((time.monotonic(), wire.decode_progress(msg.payload)))

    with bench_cluster(agents) as cluster:
        admin = cluster.admin.credentials
        assert admin is not None
        watcher = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        watcher.username_pw_set(admin.username, admin.password)
        watcher.on_message = keep
        watcher.connect("127.0.0.1", cluster.broker.port)
        watcher.subscribe(topics.LIFE_PROGRESS_FILTER)
        watcher.loop_start()
        time.sleep(3)  # the agents' births reach the coordinator
        request = wire.LifeRequest(
            width=SIZE,
            height=SIZE,
            gens=gens,
            density=0.5,
            seed=1,
            frame_every=0,
            halo=halo,
            checkpoint_every=gens,
            request_id=f"bench-{agents}",
        )
        with JobClient(cluster.admin, connect_timeout=30) as client:
            reply = client.request(topics.JOBS_SUBMIT, request, timeout=30)
            final = client.follow(reply.job or "", lambda s: None, idle_timeout=120)
        end_loop(watcher)
        watcher.disconnect()
    assert final.finished is not None and final.state == "done", final
    with lock:
        return final.finished - final.created, list(reports)


def distributed(gens: int, halo: int, repeat: int) -> bool:
    ones, twos, ones_c, twos_c = [], [], [], []
    reports: list[Report] = []
    for _ in range(repeat):  # alternated, so a slow spell of the machine hits both
        one, one_reports = _run(1, gens, halo)
        two, reports = _run(2, gens, halo)
        ones.append(one)
        twos.append(two)
        ones_c.append(compute_phase(one_reports, gens))
        twos_c.append(compute_phase(reports, gens))
    one, two = statistics.median(ones), statistics.median(twos)
    one_c, two_c = statistics.median(ones_c), statistics.median(twos_c)
    compute_eff = one_c / (2 * two_c)
    pairs = sorted(a / (2 * b) for a, b in zip(ones_c, twos_c, strict=True))
    last = {r.strip: r for _, r in reports}
    p50 = max((r.wait_p50_ms or 0) for r in last.values())
    p99 = max((r.wait_p99_ms or 0) for r in last.values())
    efficiency = one / (2 * two)
    model = one_c / 2 + gens / halo * p50 / 1e3
    print(
        f"\ndistributed: {SIZE} x {SIZE} torus, {gens} generations, {halo}-row halos, "
        f"real broker and coordinator; medians of {repeat} runs each"
    )
    print("  submitted to done (strip start-up, assignment, final checkpoint included):")
    print(f"    1 agent (1 strip)        {one:7.2f} s")
    print(f"    2 agents (1 strip each)  {two:7.2f} s  -> parallel efficiency {efficiency:6.1%}")
    print("  computing (last strip started to last strip done; what the prototypes timed):")
    print(f"    1 agent (1 strip)        {one_c:7.2f} s")
    print(
        f"    2 agents (1 strip each)  {two_c:7.2f} s  -> parallel efficiency {compute_eff:6.1%} "
        f"(target >= 85%: {'ok' if compute_eff >= 0.85 else 'UNDER TARGET'})"
    )
    spread = f"{pairs[0]:.1%} to {pairs[-1]:.1%}, median {statistics.median(pairs):.1%}"
    print(f"    each run beside the 1-strip run just before it: {spread} (the VM drifts)")
    print(
        f"  time model: half the 1-strip computing time + p50 exchange x {gens // halo} "
        f"exchanges = {model:.2f} s"
    )
    print(f"  exchange wait per round: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return compute_eff >= 0.85


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["kernel", "distributed"])
    parser.add_argument("--gens", type=int, default=1000)
    parser.add_argument("--halo", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5, help="runs of each (medians)")
    args = parser.parse_args()
    ok = True
    if args.only in (None, "kernel"):
        ok &= kernel()
    if args.only in (None, "distributed"):
        ok &= distributed(args.gens, args.halo, args.repeat)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
