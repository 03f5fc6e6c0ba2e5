"""Soak benchmark: the head side through a day's events; memory per million messages.

    ./run bench soak [--nodes 240] [--interval 0.1] [--messages 3e6] [--warmup 1e5]
                     [--target 2.0] [--sample 5] [--life-nodes 2]

Each its own process: mosquitto, the coordinator (``piswarm head --no-display``), the
kiosk (``piswarm display`` at 1920x1080 on SDL's dummy driver) and the simulated fleet
(``piswarm sim``: telemetry every ``--interval`` s, prime blocks on one shared worker, a
Life strip on each of the first ``--life-nodes`` nodes). This process submits a prime
search and a Life job, one after the other, for the whole run; counts the messages on
``piswarm/#`` (what the kiosk is fed); samples every process's RSS and CPU; and early in
the run restarts the broker, the coordinator and the fleet (every node leaves and comes
back), checking after each that the kiosk goes on drawing frames (its log says so).

After the warm-up (``--warmup`` messages, counted again from each process's restart) it
fits each process's RSS against the messages seen and prints the growth per million
messages, as a share of the process's size. It exits 1 when any grows more than
``--target`` percent per million (the issue's target: 2% over at least 3 M messages, about
20 minutes at 10x the real rate of 240 nodes at 1 Hz), when the kiosk stopped drawing
after the events, or when fewer than two jobs ended (each followed by the next).
"""

import argparse
import contextlib
import os
import re
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.cluster import spawn
from broker.runner import BrokerProcess
from broker.users import ADMIN_USER, VIEWER_USER, UserStore
from head.jobclient import JobClient
from piswarm.client import MqttClient
from piswarm.errors import PiswarmError
from piswarm.fleet import sim_node_ids
from piswarm.mqtt import BrokerSettings, Credentials
from piswarm.protocol import topics
from piswarm.protocol.jobs import PrimesRequest
from piswarm.protocol.life import LifeRequest

REPORT_EVERY = 2.0  # seconds between the kiosk's "display: N frames" log lines
EVENTS = ("broker restart", "coordinator restart", "fleet leaves and comes back")
EVENTS_AT = (0.12, 0.2, 0.28)  # shares of the run: steady for the last 70%
REPORT = re.compile(r"display: (\d+) frames, (\d+) messages, .* link (\w+)")


@dataclass
class Series:
    """One process's samples: (messages seen, RSS bytes, CPU percent)."""

    name: str
    samples: list[tuple[int, int, float]] = field(default_factory=list)
    since: int = 0  # messages when this process (re)started

    def growth(self, warmup: int) -> tuple[float, int, int] | None:
        """Least-squares RSS growth per million messages, as a percent of the RSS at the
        start of the fit; with the fit's first and last message counts. None: too few."""
        points = [(m, r) for m, r, _c in self.samples if m >= self.since + warmup]
        if len(points) < 3 or points[-1][0] - points[0][0] <= 0:
            return None
        n = len(points)
        mean_m = sum(m for m, _ in points) / n
        mean_r = sum(r for _, r in points) / n
        var = sum((m - mean_m) ** 2 for m, _ in points)
        slope = sum((m - mean_m) * (r - mean_r) for m, r in points) / var  # bytes a message
        base = mean_r - slope * (mean_m - points[0][0])
        return 100.0 * slope * 1e6 / base, points[0][0], points[-1][0]

    def cpu(self, warmup: int) -> float:
        used = [c for m, _r, c in self.samples if m >= self.since + warmup]
        return sum(used) / len(used) if used else 0.0


@dataclass
class SoakResult:
    messages: int
    seconds: float
    series: list[Series]
    events: list[str]
    growth: dict[str, float]  # process -> percent per million messages
    worst: float
    jobs_done: int  # jobs that ended and were followed by the next
    job_errors: int  # submits or follows that failed (a restart under them): retried
    kiosk: tuple[int, int, str] | None  # its last report: frames, messages, link
    kiosk_after_events: tuple[int, int, str] | None  # its report after the last event

    @property
    def kiosk_kept_drawing(self) -> bool:
        """Frames and messages went on after the last event, connected, to the end."""
        last, mark = self.kiosk, self.kiosk_after_events
        return (
            last is not None
            and mark is not None
            and last[0] > mark[0]
            and last[1] > mark[1]
            and last[2] == "connected"
        )


class Counter:
    """Counts the messages on piswarm/# as the viewer sees them (what the kiosk gets)."""

    def __init__(self, settings: BrokerSettings) -> None:
        self.count = 0
        self.client = MqttClient(
            settings,
            role="soak-count",
            subscriptions=[(topics.ALL_FILTER, 0)],
            handler=self._count,
            name="soak counter",
        )

    def _count(self, _message: object) -> None:
        self.count += 1


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


class Soak:
    """The processes of one soak run and the thread that keeps jobs going."""

    def __init__(self, root: Path, *, nodes: int, interval: float, life_nodes: int) -> None:
        self.root = root
        self.nodes, self.interval, self.life_nodes = nodes, interval, life_nodes
        self.users = UserStore(root / "users")
        self.users.add_nodes(sim_node_ids(nodes))
        self.broker = BrokerProcess(
            users=self.users, state_dir=root / "broker", die_with_parent=True
        )
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self.jobs_done = 0
        self.job_errors = 0

    def settings(self, user: str) -> BrokerSettings:
        creds = Credentials.load(self.users.credentials_path(user))
        return BrokerSettings(host="127.0.0.1", port=self.broker.port, credentials=creds)

    def common(self) -> list[str]:
        return ["--broker-host", "127.0.0.1", "--broker-port", str(self.broker.port)]

    def start(self, name: str) -> None:
        root = self.root
        if name == "coordinator":
            args = ["head", "--no-display", "--db", str(root / "jobs.sqlite")]
            args += ["--credentials", str(self.users.credentials_path(ADMIN_USER))]
            self.procs[name] = spawn([*args, *self.common()], root / "coordinator.log")
        elif name == "display":
            config = root / "head.toml"
            config.write_text(f"[display]\nreport_every = {REPORT_EVERY}\n")
            env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "PYGAME_HIDE_SUPPORT_PROMPT": "1"}
            args = ["display", "--windowed", "1920x1080", "--config", str(config)]
            args += ["--credentials", str(self.users.credentials_path(VIEWER_USER))]
            self.procs[name] = spawn([*args, *self.common()], root / "display.log", env)
        elif name == "fleet":
            args = ["sim", "--nodes", str(self.nodes), "--interval", str(self.interval)]
            args += ["--workers", "1", "--life-nodes", str(self.life_nodes)]
            args += ["--users-dir", str(self.users.root)]
            self.procs[name] = spawn([*args, *self.common()], root / "fleet.log")

    def pids(self) -> dict[str, int]:
        found = {name: proc.pid for name, proc in self.procs.items()}
        if self.broker.pid is not None:
            found["broker"] = self.broker.pid
        return found

    def kiosk(self) -> tuple[int, int, str] | None:
        """The kiosk's last report: frames, messages, link state."""
        last = None
        for line in (self.root / "display.log").read_text(errors="replace").splitlines():
            found = REPORT.search(line)
            if found:
                last = (int(found[1]), int(found[2]), found[3])
        return last

    def jobs(self) -> None:
        """A prime search, then a Life job, for as long as the run lasts."""
        n = 0
        while not self.stopping.is_set():
            n += 1
            request: PrimesRequest | LifeRequest
            if n % 2:
                request = PrimesRequest(start=1, end=2 * 10**8, block_size=10**7, keep="counts")
            else:
                request = LifeRequest(
                    width=256, height=128, gens=600, density=0.3, seed=n, pace=60.0
                )
            try:
                with JobClient(self.settings(ADMIN_USER)) as client:
                    job = client.submit(request, timeout=30).job
                    while job and not self.stopping.wait(1.0):
                        found = client.snapshot(topics.job_status(job))
                        if found and found[0].state != "running":
                            self.jobs_done += 1
                            break
            except PiswarmError:
                self.job_errors += 1  # the coordinator or the broker restarting: again
                self.stopping.wait(2.0)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"soak: timed out waiting for {what}")
        time.sleep(0.2)


def run_soak(
    *,
    nodes: int,
    interval: float,
    messages: int,
    warmup: int,
    sample: float,
    life_nodes: int,
    log: Callable[[str], None] = print,
) -> SoakResult:
    """One soak run (see the module); ``log`` gets progress lines."""
    say = log
    with tempfile.TemporaryDirectory(prefix="piswarm-soak-") as tmp:
        soak = Soak(Path(tmp), nodes=nodes, interval=interval, life_nodes=life_nodes)
        soak.broker.start()
        counter = Counter(soak.settings(VIEWER_USER))
        counter.client.start()
        series = {name: Series(name) for name in ("broker", "coordinator", "display", "fleet")}
        procs: dict[str, psutil.Process] = {}
        done_events: list[str] = []
        after_events = None
        jobs = threading.Thread(target=soak.jobs, name="soak-jobs")
        started = time.monotonic()
        try:
            for name in ("coordinator", "display", "fleet"):
                soak.start(name)
            wait_for(lambda: soak.kiosk() is not None, "the kiosk's first report")
            jobs.start()
            next_event = 0
            while counter.count < messages:
                time.sleep(sample)
                count = counter.count
                for name, pid in soak.pids().items():
                    proc = procs.get(name)
                    if proc is None or proc.pid != pid:
                        proc = procs[name] = psutil.Process(pid)
                        proc.cpu_percent(None)
                        series[name].since = count
                        series[name].samples = []
                        continue
                    with contextlib.suppress(psutil.NoSuchProcess):
                        series[name].samples.append(
                            (count, proc.memory_info().rss, proc.cpu_percent(None))
                        )
                say(
                    f"{count:>10,} messages  "
                    + "  ".join(
                        f"{s.name} {s.samples[-1][1] / 2**20:.1f} MB"
                        for s in series.values()
                        if s.samples
                    )
                )
                if next_event < len(EVENTS) and count >= EVENTS_AT[next_event] * messages:
                    _event(soak, EVENTS[next_event], counter)
                    done_events.append(EVENTS[next_event])
                    say(f"event: {EVENTS[next_event]}; the kiosk kept drawing")
                    next_event += 1
                    after_events = soak.kiosk()
            seconds = time.monotonic() - started
            time.sleep(REPORT_EVERY * 1.5)  # one more report from the kiosk
            kiosk = soak.kiosk()
        finally:
            soak.stopping.set()
            if jobs.is_alive():
                jobs.join(60)
            for proc in soak.procs.values():
                stop(proc)
            counter.client.stop()
            soak.broker.stop()
    growth: dict[str, float] = {}
    for s in series.values():
        fit = s.growth(warmup)
        if fit is not None:
            growth[s.name] = fit[0]
    worst = max(growth.values(), default=0.0)
    return SoakResult(
        counter.count,
        seconds,
        list(series.values()),
        done_events,
        growth,
        worst,
        soak.jobs_done,
        soak.job_errors,
        kiosk,
        after_events,
    )


def _event(soak: Soak, event: str, counter: Counter) -> None:
    """Do ``event``; then wait for the kiosk to draw new frames of new messages, connected."""
    before = soak.kiosk() or (0, 0, "")
    if event == "broker restart":
        soak.broker.stop()
        time.sleep(1.0)
        soak.broker.start()
    elif event == "coordinator restart":
        stop(soak.procs["coordinator"])
        soak.start("coordinator")
    else:
        stop(soak.procs["fleet"])
        soak.start("fleet")
    wait_for(counter.client.connected.is_set, "the counter reconnecting")

    def drawing() -> bool:
        now = soak.kiosk()
        return (
            now is not None and now[0] > before[0] and now[1] > before[1] and now[2] == "connected"
        )

    wait_for(drawing, f"the kiosk drawing again after the {event}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=240)
    parser.add_argument("--interval", type=float, default=0.1, help="telemetry period (s)")
    parser.add_argument("--messages", type=float, default=3e6)
    parser.add_argument("--warmup", type=float, default=1e5)
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--life-nodes", type=int, default=2)
    parser.add_argument("--target", type=float, default=2.0, help="percent per million")
    args = parser.parse_args()
    result = run_soak(
        nodes=args.nodes,
        interval=args.interval,
        messages=int(args.messages),
        warmup=int(args.warmup),
        sample=args.sample,
        life_nodes=args.life_nodes,
    )
    rate = result.messages / result.seconds if result.seconds else 0.0
    print(
        f"\n{result.messages:,} messages in {result.seconds:.0f} s ({rate:,.0f}/s); "
        f"events: {', '.join(result.events)}"
    )
    print(f"{'process':<12} {'RSS MB':>12} {'growth %/M msgs':>16} {'CPU %':>7}  fit over")
    for s in result.series:
        fit = s.growth(int(args.warmup))
        first = s.samples[0][1] / 2**20 if s.samples else 0.0
        last = s.samples[-1][1] / 2**20 if s.samples else 0.0
        span = f"{fit[1]:,}-{fit[2]:,}" if fit else "too few samples"
        growth = f"{fit[0]:+.2f}" if fit else "-"
        print(
            f"{s.name:<12} {first:>5.1f}->{last:<6.1f} {growth:>16} "
            f"{s.cpu(int(args.warmup)):>7.1f}  {span}"
        )
    print(
        f"jobs ended and followed by the next: {result.jobs_done} "
        f"({result.job_errors} submits retried across restarts); kiosk's last report: "
        f"{result.kiosk} (after the last event: {result.kiosk_after_events})"
    )
    ok = result.worst < args.target and result.kiosk_kept_drawing and result.jobs_done >= 2
    ok = ok and len(result.events) == len(EVENTS)
    verdict = "PASS" if ok else "FAIL"
    worst = f"{result.worst:+.2f}% per million messages"
    print(f"worst growth {worst}: {verdict} (target < {args.target}%)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    raise SystemExit(main())
