"""``piswarm experiment``: run a scaling experiment on the room, and redraw its report.

``run`` talks to the coordinator through the broker (as the admin), like ``piswarm job``;
it writes its directory as each run ends, and given the same options and ``--out`` again
it carries on where it stopped. ``show`` needs only the directory.
"""

import argparse
import sys
from pathlib import Path
from typing import Any

from head.cli.jobs import add_coordinator_flags, admin_settings, board_size
from head.cli.placement_flags import node_patterns
from piswarm.flags import real, whole
from piswarm.protocol import jobs
from piswarm.protocol import life as wire
from piswarm.protocol.placement import MAX_PER_NODE


def counts(text: str) -> tuple[int, ...]:
    """``1,2,4`` (these), ``1..16`` (1, 2, 4, 8, 16: doubling, the last one included) or
    ``1-4`` (every count from 1 to 4)."""
    try:
        if ".." in text:
            lo, hi = (int(x) for x in text.split(".."))
            out, n = [], lo
            while n < hi:
                out.append(n)
                n *= 2
            values = [*out, hi]
        elif "-" in text:
            lo, hi = (int(x) for x in text.split("-"))
            values = list(range(lo, hi + 1))
        else:
            values = [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:30]!r} is not counts like 1,2,4 or 1..16 or 1-4"
        ) from None
    if not values or min(values) < 1 or max(values) > 1_000_000:
        raise argparse.ArgumentTypeError(f"{text[:30]!r}: counts are 1-1,000,000")
    return tuple(sorted(set(values)))


counts.__name__ = "counts"


def register(sub: Any) -> None:
    experiment = sub.add_parser(
        "experiment", help="measure the room's speed-up: the same job over more nodes"
    )
    verbs = experiment.add_subparsers(dest="verb", metavar="VERB", parser_class=type(experiment))
    verbs.required = True

    run = verbs.add_parser("run", help="run (or resume) an experiment, run by run")
    run.add_argument("name", metavar="NAME", help="a-z, 0-9 and '-': its topic and label")
    run.add_argument("--kind", choices=["primes", "life"], default="primes")
    run.add_argument(
        "--scaling",
        choices=["strong", "weak"],
        default="strong",
        help="strong: the same job on every node count; weak: the job grows with the nodes",
    )
    run.add_argument(
        "--nodes",
        type=counts,
        default=(1, 2),
        metavar="COUNTS",
        help="node counts: 1,2,4 or 1..16 (doubling) or 1-4 (default 1,2)",
    )
    run.add_argument(
        "--workers",
        type=counts,
        default=(1,),
        metavar="COUNTS",
        help="workers per node (Life: strips per node), as --nodes (default 1)",
    )
    run.add_argument("--repeats", type=whole(1, 100), default=1, metavar="N")
    run.add_argument(
        "--pick",
        type=node_patterns,
        action="extend",
        metavar="IDS",
        help="the nodes it may use: ids or globs (default: any online node)",
    )
    number = whole(0, jobs.MAX_NUMBER)
    run.add_argument("--start", type=number, default=1, help="primes: the range's start")
    run.add_argument(
        "--end",
        type=number,
        default=10**8,
        help="primes: the range's end for the smallest node count (default 1e8)",
    )
    run.add_argument("--block-size", type=whole(jobs.MIN_BLOCK, jobs.MAX_COUNTS_BLOCK), metavar="N")
    run.add_argument("--keep", choices=sorted(jobs.KEEPS), default="counts")
    run.add_argument(
        "--size",
        type=board_size,
        default=(1024, 1024),
        metavar="WxH",
        help="Life: the board for one node count's job (default 1024x1024)",
    )
    run.add_argument("--gens", type=whole(1, wire.MAX_GENS), default=200, metavar="G")
    run.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="where its runs and report go"
    )
    run.add_argument(
        "--run-timeout",
        type=real(1, 7 * 86400, unit=" s"),
        default=3600.0,
        metavar="S",
        help="the longest one run may take (default 3600)",
    )
    run.add_argument(
        "--node-wait",
        type=real(0, 86400, unit=" s"),
        default=60.0,
        metavar="S",
        help="how long a run waits for enough nodes online (default 60)",
    )
    run.add_argument(
        "--warmup",
        type=whole(0, 10),
        default=1,
        metavar="N",
        help="unrecorded runs first, on all the sweep's nodes: they start their workers, "
        "and the head learns their speed (default 1)",
    )
    add_coordinator_flags(run)
    run.set_defaults(handler=run_experiment)

    show = verbs.add_parser("show", help="redraw a saved experiment's report")
    show.add_argument(
        "dir", type=Path, metavar="DIR", help="its directory (--out), or a file in it"
    )
    show.set_defaults(handler=show_experiment)


def _plan(args: argparse.Namespace) -> Any:
    from head.experiment.plan import Plan, PlanError
    from piswarm.errors import ConfigError

    if max(args.workers) > MAX_PER_NODE:
        raise ConfigError(f"--workers: at most {MAX_PER_NODE}")
    width, height = args.size
    try:
        return Plan(
            name=args.name,
            kind=args.kind,
            scaling=args.scaling,
            nodes=args.nodes,
            workers=args.workers,
            repeats=args.repeats,
            pick=tuple(dict.fromkeys(args.pick or ())),
            start=args.start,
            end=args.end,
            block_size=args.block_size,
            keep=args.keep,
            width=width,
            height=height,
            gens=args.gens,
        )
    except PlanError as exc:
        raise ConfigError(str(exc)) from None


def run_experiment(args: argparse.Namespace) -> int:
    from head.experiment import report
    from head.experiment.lab import Lab
    from head.experiment.record import Record, RecordError
    from head.experiment.runner import ExperimentRunner, LocalProcesses
    from piswarm.errors import ConfigError

    plan = _plan(args)
    try:
        record = Record(args.out, plan)
    except (RecordError, OSError) as exc:
        raise ConfigError(f"--out: {exc}") from None
    settings = admin_settings(args)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with Lab(settings, connect_timeout=args.timeout) as lab:
        runner = ExperimentRunner(
            plan,
            record,
            lab,
            local=LocalProcesses(settings.host, settings.port),
            run_timeout=args.run_timeout,
            node_wait=args.node_wait,
            request_timeout=args.timeout,
            warmups=args.warmup,
            say=say,
        )
        try:
            runner.run()
        finally:
            if record.runs:
                text, png = report.write(args.out, plan, record.runs)
                say(f"report: {text} and {png}")
    print(report.summary(plan, record.runs), end="")
    return 0


def show_experiment(args: argparse.Namespace) -> int:
    from head.experiment import report
    from head.experiment.record import RecordError, read_plan, read_runs
    from piswarm.errors import ConfigError

    directory = args.dir.parent if args.dir.is_file() else args.dir
    try:
        plan = read_plan(directory)
        runs = read_runs(directory)
    except (RecordError, OSError) as exc:
        raise ConfigError(str(exc)) from None
    text, png = report.write(directory, plan, runs)
    print(report.summary(plan, runs), end="")
    print(f"report: {text} and {png}", file=sys.stderr)
    return 0
