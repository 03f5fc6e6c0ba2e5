"""Scaling experiments on this machine: the room measuring its own speed-up.

    ./run bench experiment [--agents 2] [--end 2e10] [--size 2048x2048] [--gens 4000]
                           [--repeats 2] [--kinds primes,life]

A real broker, coordinator and ``--agents`` agents (one worker each), then one strong
scaling sweep per kind (1 .. --agents nodes) run by ``piswarm experiment``'s own runner
(a prime range of ~10 s on one node: 2e10 with libprimesieve, 1e9 with numpy).
Prints each sweep's report (speed-up, efficiency, Amdahl's serial fraction, where the time
went), and the experiment's own overhead against the anchors issue 19 names: the time
between runs (picking the nodes, asking their readings, storing the run: target under
5% of the sweep's time), each run's start (from its submit to its first result being
possible: inside the coordinator's wall time, shown as the 1-node run's wall against the
sweep) and the head's CPU between runs.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import psutil

from bench.cluster import bench_cluster
from head.cli.experiment import counts
from head.experiment import report
from head.experiment.lab import Lab
from head.experiment.plan import Plan
from head.experiment.record import Record
from head.experiment.runner import ExperimentRunner, LocalProcesses
from piswarm.flags import whole
from piswarm.sieve_backends import backend_name

OVERHEAD_TARGET = 0.05


def cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system + t.children_user + t.children_system)


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench experiment", description=__doc__)
    parser.add_argument("--agents", type=whole(1, 64), default=2)
    fast = backend_name() == "primesieve"  # ~15x the numpy sieve: a range as long in time
    parser.add_argument("--end", type=whole(1000, 10**12), default=2 * 10**10 if fast else 10**9)
    parser.add_argument("--size", default="2048x2048")
    parser.add_argument("--gens", type=whole(1, 10**6), default=4000)
    parser.add_argument("--repeats", type=whole(1, 20), default=2)
    parser.add_argument("--kinds", default="primes,life")
    args = parser.parse_args()
    width, height = (int(x) for x in args.size.split("x"))
    nodes = counts(f"1..{args.agents}")
    failed = False
    with bench_cluster(args.agents) as cluster, tempfile.TemporaryDirectory() as out:
        head = psutil.Process(cluster.procs[0].pid)
        for kind in args.kinds.split(","):
            plan = Plan(
                name=f"bench-{kind}",
                kind=kind,  # type: ignore[arg-type]
                scaling="strong",
                nodes=nodes,
                repeats=args.repeats,
                end=args.end,
                keep="counts",
                width=width,
                height=height,
                gens=args.gens,
            )
            record = Record(Path(out) / kind, plan)
            with Lab(cluster.admin) as lab:
                runner = ExperimentRunner(
                    plan,
                    record,
                    lab,
                    local=LocalProcesses("127.0.0.1", cluster.broker.port),
                    run_timeout=3600,
                    node_wait=60,
                    say=lambda line: print(line, file=sys.stderr),
                )
                head_before, started = cpu(head), time.monotonic()
                runner.run()
                sweep_s, head_s = time.monotonic() - started, cpu(head) - head_before
            runs = record.runs
            print(report.summary(plan, runs))
            gaps = sum(r.gap_s for r in runs)
            in_runs = sum(r.head_cpu_s or 0.0 for r in runs)
            ratio = gaps / sweep_s
            ok = ratio <= OVERHEAD_TARGET
            failed |= not ok
            print(
                f"{kind}: sweep {sweep_s:.1f} s for {len(runs)} runs; between runs "
                f"{gaps:.2f} s = {ratio:.1%} of the sweep (target <= {OVERHEAD_TARGET:.0%}: "
                f"{'met' if ok else 'MISSED'}), {gaps / len(runs):.3f} s a run; head CPU "
                f"between runs {max(0.0, head_s - in_runs):.2f} s "
                f"({max(0.0, head_s - in_runs) / sweep_s:.1%} of the sweep), in runs "
                f"{in_runs:.2f} s\n"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
