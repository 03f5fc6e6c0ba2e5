"""Run a plan: run by run, measured, stored as each ends, published over MQTT.

A run picks its nodes (the first online ones, by id, that the experiment may use and
that have the workers asked for), submits the job placed on exactly those nodes with that
many workers each, and follows it to the end. Then it asks those nodes for a reading (so
their busy seconds hold every block of the run) and stores the run: the coordinator's
wall time, the nodes' busy time, the head's and broker's CPU (when they run on this
machine), the broker's messages and bytes, temperatures and throttling, versions and
backends. The time between one run's end and the next one's start is the experiment's
own cost, and is kept with each run (``gap_s``).
"""

import dataclasses
import itertools
import logging
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from head.experiment import fit
from head.experiment.lab import Lab, Window
from head.experiment.plan import NAMES_BYTES, Plan, Run, placement_for
from head.experiment.record import NodeRow, Record
from piswarm import protocol
from piswarm.errors import PiswarmError
from piswarm.protocol import experiments, topics
from piswarm.protocol.experiments import ExperimentRun, ExperimentStatus
from piswarm.protocol.jobs import CancelRequest, JobStatus
from piswarm.protocol.life import LifeStatus

log = logging.getLogger(__name__)

TELEMETRY_WAIT_S = 10.0
"""How long the nodes of a finished run have to send the reading asked of them."""


class ExperimentError(PiswarmError):
    """An experiment that cannot go on (the message says why and what to do)."""


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used so far by the head's coordinator and the broker (None: not here)."""

    head: float | None
    broker: float | None


class LocalProcesses:
    """The coordinator and the broker, when they run on this machine: found by the port
    they use, read with psutil. Elsewhere, their CPU is not measured (``None``)."""

    def __init__(self, host: str, port: int) -> None:
        self.head: psutil.Process | None = None
        self.broker: psutil.Process | None = None
        if not _is_local(host):
            return
        try:
            for conn in psutil.net_connections(kind="tcp"):
                addr = conn.laddr
                listening = conn.status == psutil.CONN_LISTEN and isinstance(addr, tuple)
                if listening and addr and addr[1] == port and conn.pid is not None:
                    self.broker = psutil.Process(conn.pid)
                    break
            for proc in psutil.process_iter(["cmdline"]):
                args = [a.rsplit("/", 1)[-1] for a in proc.info["cmdline"] or []]
                coordinator = ("piswarm", "head") in itertools.pairwise(args)
                if coordinator and any(
                    c.raddr and c.raddr.port == port for c in proc.net_connections("tcp")
                ):
                    self.head = proc
                    break
        except psutil.Error as exc:
            log.info("the head's and the broker's CPU will not be measured: %s", exc)
        for name, found in (("coordinator", self.head), ("broker", self.broker)):
            if found is None:
                log.info("no %s on this machine uses port %d: its CPU is not measured", name, port)

    def cpu(self) -> Cpu:
        return Cpu(_cpu_of(self.head), _cpu_of(self.broker))


def _cpu_of(proc: psutil.Process | None) -> float | None:
    if proc is None:
        return None
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return None


def _is_local(host: str) -> bool:
    if host in ("localhost", "127.0.0.1", "::1", socket.gethostname()):
        return True
    try:
        return socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


class ExperimentRunner:
    """Runs a plan's missing runs in order (a resumed experiment skips those on disk)."""

    def __init__(
        self,
        plan: Plan,
        record: Record,
        lab: Lab,
        *,
        local: LocalProcesses,
        run_timeout: float,
        node_wait: float = 60.0,
        request_timeout: float = 10.0,
        warmups: int = 1,
        names_bytes: int = NAMES_BYTES,
        say: Callable[[str], None] = lambda _line: None,
    ) -> None:
        """``names_bytes``: how much of a run's request its node ids may take (past it the
        run asks for "any N"; tests make it small)."""
        self.plan = plan
        self.record = record
        self.lab = lab
        self.local = local
        self.run_timeout = run_timeout
        self.node_wait = node_wait
        self.request_timeout = request_timeout
        self.warmups = warmups
        self.names_bytes = names_bytes
        self.say = say
        self._last_end = time.monotonic()
        self._current: Run | None = None
        self._current_ids: tuple[str, ...] = ()
        self._job: str | None = None  # the run under way's job, once submitted

    def run(self) -> None:
        done, runs = self.record.done, self.plan.runs()
        todo = [r for r in runs if r.index not in done]
        if len(todo) < len(runs):
            self.say(f"resuming: {len(done)} runs on disk, {len(todo)} to go")
        self._cancel_leftovers()
        self._publish_status("running")
        try:
            for _ in range(self.warmups if todo else 0):
                self._warm_up()
            for run in todo:
                self._one(run)
        except BaseException as exc:
            status = self.lab.status
            if self._job is not None and (status is None or status.state == "running"):
                self._cancel(self._job)  # a run cut short is done again when resumed
            state = "stopped" if isinstance(exc, KeyboardInterrupt) else "failed"
            self._current = None
            self._publish_status(state, error=None if state == "stopped" else str(exc)[:300])
            raise
        self._current = None
        self._publish_status("done")

    # -- one run ---------------------------------------------------------------------------

    def _warm_up(self) -> None:
        """A run that is not recorded: the smallest job on as many of the sweep's nodes as
        are online (up to its largest count), with the most workers. The nodes start and
        load their sieve, and the coordinator learns their speed and sizes blocks from it:
        without it the first recorded run is slower than its repeats (measured: 11.7
        against 7.3 s, its blocks sized before any node had said how fast it is)."""
        plan, lab = self.plan, self.lab
        life_job = plan.kind == "life"
        workers = plan.workers[-1]
        nodes = lab.candidates(plan.pick, life_job=life_job, workers=workers)[: plan.nodes[-1]]
        if not nodes:
            return  # the first run waits for its nodes, and says so
        rid = f"exp-{plan.name}-warm-{uuid.uuid4().hex[:6]}"[:64]
        placement = placement_for(nodes, workers, plan.pick, names_bytes=self.names_bytes)
        request = dataclasses.replace(
            plan.request(plan.nodes[0], workers, placement, rid), name=f"{plan.name} warm-up"
        )
        lab.open_window(nodes)
        job = self._job = lab.submit_run(request, self.request_timeout)
        self.say(f"warming up on {len(nodes)} nodes (not recorded): job {job}")
        self._wait_end(f"the warm-up job {job}")
        self._done_with(job)

    def _wait_end(self, what: str) -> None:
        """Follow the job under way until it is no longer running (``--run-timeout``)."""
        lab = self.lab
        if not lab.wait(
            lambda: lab.status is not None and lab.status.state != "running",
            self.run_timeout,
            what,
        ):
            raise ExperimentError(
                f"{what} did not end within {self.run_timeout:g} s (--run-timeout); it is "
                "cancelled, and the experiment resumes from there"
            )

    def _done_with(self, job: str) -> None:
        """The job under way has ended and is accounted for: the time between runs starts."""
        self._job = None
        self.lab.mqtt.unsubscribe(topics.job_status(job))
        self._last_end = time.monotonic()

    def _one(self, run: Run) -> None:
        plan, lab = self.plan, self.lab
        life_job = plan.kind == "life"
        nodes = self._nodes_for(run, life_job)
        placement = placement_for(nodes, run.workers, plan.pick, names_bytes=self.names_bytes)
        if placement.count is not None:  # "any N": the coordinator picks them, watch all
            nodes = lab.candidates(plan.pick, life_job=life_job, workers=run.workers)
        if not life_job:  # its busy seconds as they stand now, not a period ago
            lab.ask_telemetry(nodes, TELEMETRY_WAIT_S)
        lab.open_window(nodes)
        cpu0, sys0 = self.local.cpu(), dict(lab.sys)
        rid = f"exp-{plan.name}-{run.index}-{uuid.uuid4().hex[:6]}"[:64]
        request = plan.request(run.nodes, run.workers, placement, rid)
        submitted = time.monotonic()
        named = () if placement.count is not None else tuple(nodes)
        self._current, self._current_ids = run, named[: experiments.MAX_LISTED_NODES]
        job = self._job = lab.submit_run(request, self.request_timeout)
        started = time.time()
        self._publish_status("running")
        self.say(
            f"run {run.index + 1}/{plan.total}: {run.nodes} nodes x {run.workers} workers "
            f"(repeat {run.repeat + 1}), job {job}"
        )
        self._wait_end(f"job {job} of run {run.index}")
        status, window = lab.status, lab.window
        if status is None or window is None or status.state != "done":
            raise ExperimentError(f"job {job} of run {run.index} ended {status and status.state}")
        if not life_job:
            lab.ask_telemetry(nodes, TELEMETRY_WAIT_S)
        cpu1, sys1 = self.local.cpu(), dict(lab.sys)
        record, node_rows = self._measure(run, job, status, window, nodes, started, submitted)
        record = _with_costs(record, cpu0, cpu1, sys0, sys1)
        self.record.add(record, node_rows)
        lab.mqtt.publish(topics.experiment_runs(plan.name), experiments.encode(record), qos=1)
        self._done_with(job)
        self.say(
            f"  {record.wall_s:.2f} s wall, {record.busy_s or 0:.2f} s busy on the nodes, "
            f"{record.gap_s:.2f} s between runs"
        )

    def _nodes_for(self, run: Run, life_job: bool) -> list[str]:
        """The run's nodes: the first ``run.nodes`` that may take part, by id (waiting up
        to ``node_wait`` s for enough of them to be online)."""
        found: list[str] = []

        def enough() -> bool:
            nonlocal found
            found = self.lab.candidates(self.plan.pick, life_job=life_job, workers=run.workers)
            return len(found) >= run.nodes

        if not self.lab.wait(enough, self.node_wait, f"{run.nodes} nodes"):
            what = "Life strip slots" if life_job else "workers"
            pick = f" matching {', '.join(self.plan.pick)}" if self.plan.pick else ""
            raise ExperimentError(
                f"run {run.index} needs {run.nodes} nodes with {run.workers} {what}{pick}; "
                f"{len(found)} are online ({', '.join(found[:8]) or 'none'})"
            )
        return found[: run.nodes]

    def _measure(
        self,
        run: Run,
        job: str,
        status: JobStatus | LifeStatus,
        w: Window,
        nodes: list[str],
        started: float,
        submitted: float,
    ) -> tuple[ExperimentRun, list[NodeRow]]:
        lab, plan = self.lab, self.plan
        finished = status.finished if status.finished is not None else status.ts
        busy: dict[str, float | None] = {}
        if plan.kind == "life":
            for node, seconds in w.strips.values():
                busy[node] = (busy.get(node) or 0.0) + seconds
        else:
            for node in nodes:
                before, after = w.busy_at_start.get(node), lab.nodes[node].busy_s
                busy[node] = None if before is None or after is None else after - before
        if len(nodes) > run.nodes:  # "any N": the run's nodes are those that worked
            laid_out = set(status.nodes) if isinstance(status, LifeStatus) else set()
            nodes = sorted({n for n in nodes if busy.get(n)} | laid_out)
            busy = {n: busy.get(n) for n in nodes}
        known = [b for b in busy.values() if b is not None]
        seen = [lab.nodes[n] for n in nodes if n in lab.nodes]
        result = (status.hash or "") if isinstance(status, LifeStatus) else str(status.primes)
        record = ExperimentRun(
            experiment=plan.name,
            run=run.index,
            kind=plan.kind,
            scaling=plan.scaling,
            nodes=run.nodes,
            workers=run.workers,
            repeat=run.repeat,
            job=job,
            work=plan.work(run.nodes),
            wall_s=round(max(0.0, finished - status.created), 4),
            started=round(started, 3),
            gap_s=round(max(0.0, submitted - self._last_end), 4),
            result=result,
            node_ids=tuple(nodes[: experiments.MAX_LISTED_NODES]),
            busy_s=round(sum(known), 6) if known else None,
            busy_min_s=round(min(known), 6) if known else None,
            busy_max_s=round(max(known), 6) if known else None,
            temp_max_c=max(w.temp_max.values()) if w.temp_max else None,
            temp_mean_c=round(w.temp_sum / w.temp_count, 2) if w.temp_count else None,
            throttled=len(w.throttled),
            versions=tuple(sorted({s.version for s in seen if s.version}))[:8],
            backends=tuple(sorted({s.backend for s in seen if s.backend}))[:8],
        )
        rows = [
            NodeRow(
                run=run.index,
                node=node,
                busy_s=busy.get(node),
                temp_max_c=w.temp_max.get(node),
                throttled=node in w.throttled,
            )
            for node in nodes
        ]
        return record, rows

    # -- publishing ------------------------------------------------------------------------

    def _publish_status(self, state: str, *, error: str | None = None) -> None:
        plan = self.plan
        weak = plan.scaling == "weak"
        rows = fit.points(((r.nodes, r.workers, r.wall_s) for r in self.record.runs), weak=weak)
        points = tuple(
            experiments.ExperimentPoint(
                nodes=p.nodes,
                workers=p.workers,
                wall_s=round(p.wall_s, 4),
                speedup=round(p.speedup, 4),
                efficiency=round(p.efficiency, 4),
                repeats=p.repeats,
            )
            for row in rows.values()
            for p in row
        )[: experiments.MAX_POINTS]
        fits = tuple(
            experiments.ExperimentFit(workers=w, serial=round(s, 4))
            for w, row in rows.items()
            if (s := fit.serial_fraction(row, weak=weak)) is not None
        )
        current = self._current
        status = ExperimentStatus(
            experiment=plan.name,
            kind=plan.kind,
            scaling=plan.scaling,
            state=state,
            runs_total=plan.total,
            runs_done=len(self.record.done),
            points=points,
            fits=fits,
            ts=time.time(),
            current_nodes=None if current is None else current.nodes,
            current_workers=None if current is None else current.workers,
            current_ids=self._current_ids if current is not None else (),
            max_nodes=plan.nodes[-1],
            error=error,
        )
        self.lab.mqtt.publish(
            topics.experiment_status(plan.name), experiments.encode(status), qos=1, retain=True
        )

    def _cancel_leftovers(self) -> None:
        """Jobs of this experiment still running (it was killed mid-run): cancelled, so
        that the run done again does not share the nodes with its old self."""
        for status in self.lab.running_jobs:
            if status.name.startswith(f"{self.plan.name} "):
                self.say(f"cancelling {status.job} ({status.name}), left running by an earlier try")
                self._cancel(status.job)

    def _cancel(self, job: str) -> None:
        cancel = CancelRequest(job=job, request_id=f"exp-cancel-{uuid.uuid4().hex[:8]}")
        self.lab.mqtt.publish(topics.JOBS_CANCEL, protocol.encode(cancel), qos=1)


def _with_costs(
    record: ExperimentRun, cpu0: Cpu, cpu1: Cpu, sys0: dict[str, int], sys1: dict[str, int]
) -> ExperimentRun:
    """The run's CPU on the head and the broker, and the broker's traffic (its running
    totals, as fresh as its last ``$SYS`` report)."""

    def delta(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(max(0.0, b - a), 4)

    received, sent, bytes_in, bytes_out = topics.SYS_COUNTERS
    messages = bytes_ = None
    if all(k in sys0 and k in sys1 for k in topics.SYS_COUNTERS):
        messages = max(0, sys1[received] - sys0[received]) + max(0, sys1[sent] - sys0[sent])
        bytes_ = max(0, sys1[bytes_in] - sys0[bytes_in]) + max(0, sys1[bytes_out] - sys0[bytes_out])
    return dataclasses.replace(
        record,
        head_cpu_s=delta(cpu0.head, cpu1.head),
        broker_cpu_s=delta(cpu0.broker, cpu1.broker),
        messages=messages,
        bytes=bytes_,
    )
