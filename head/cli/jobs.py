"""``piswarm job``: submit, follow, list, cancel, export and verify jobs.

``primes``, ``list``, ``status`` and ``cancel`` talk to the coordinator over MQTT (so they
work from any machine that reaches the broker, as the admin); ``export`` and ``verify``
read the coordinator's SQLite database (so they run on the head node).
"""

import argparse
import contextlib
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from head.cli.placement_flags import add_placement_flags, placement_of
from head.config import broker_settings, jobs_db
from piswarm.durations import duration
from piswarm.flags import add_broker_flags, readable, real, span, text, whole
from piswarm.protocol import jobs
from piswarm.protocol import life as wire


def register(sub: Any) -> None:

    job = sub.add_parser("job", help="submit and follow jobs (the prime search)")
    verbs = job.add_subparsers(dest="verb", metavar="VERB", parser_class=type(job))
    verbs.required = True

    def mqtt_verb(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(name, help=help_text)
        add_coordinator_flags(parser)
        return parser

    number = whole(0, jobs.MAX_NUMBER)
    label = text(jobs.MAX_NAME)
    primes = mqtt_verb("primes", "find every prime in [START, END]")
    primes.add_argument("start", type=number, metavar="START", help="e.g. 1 or 1e9")
    primes.add_argument("end", type=number, metavar="END", help="e.g. 1e10 (included)")
    primes.add_argument(
        "--block-size",
        type=whole(jobs.MIN_BLOCK, jobs.MAX_COUNTS_BLOCK),
        default=None,
        metavar="N",
        help=f"numbers per block ({span(jobs.MIN_BLOCK, jobs.MAX_BLOCK)}; up to "
        f"{readable(jobs.MAX_COUNTS_BLOCK)} with --keep counts; default: "
        "the coordinator sizes them from its nodes' speeds)",
    )
    primes.add_argument(
        "--keep",
        choices=sorted(jobs.KEEPS),
        default="primes",
        help="what is stored of each block: every prime (export them; the "
        "default) or counts only (pi(x), twin pairs, largest gap; a few "
        "hundred bytes a block)",
    )
    primes.add_argument(
        "--double-check",
        type=real(0, 1),
        default=None,
        metavar="FRACTION",
        help="blocks computed again by another node and compared (default: "
        "the coordinator's, 0.03; 0: none)",
    )
    add_placement_flags(
        primes, per_node="blocks a node computes at once, its workers (default: all of them)"
    )
    primes.add_argument("--name", type=label, default="", help="a label for the display")
    primes.add_argument("--wait", action="store_true", help="follow it until it ends")
    primes.set_defaults(handler=run_primes)

    life = mqtt_verb("life", "run the Game of Life on the cluster's nodes")
    life.add_argument(
        "--size", type=board_size, required=True, metavar="WxH", help="the board, e.g. 4096x4096"
    )
    life.add_argument(
        "--gens",
        type=whole(1, wire.MAX_GENS),
        required=True,
        metavar="G",
        help="generations to run, e.g. 1000 or 1e4",
    )
    start = life.add_mutually_exclusive_group(required=True)
    start.add_argument(
        "--pattern",
        metavar="FILE.rle|NAME",
        help="an RLE file, or a bundled pattern: acorn, breeder1, glider, "
        "gosper-glider-gun, r-pentomino",
    )
    start.add_argument(
        "--random",
        type=real(0, 1),
        metavar="DENSITY",
        help="a random soup: each cell alive with this probability",
    )
    life.add_argument(
        "--seed", type=whole(0, wire.MAX_SEED), default=0, help="of the random soup (default 0)"
    )
    life.add_argument(
        "--at", type=position, metavar="X,Y", help="the pattern's top-left cell (default: centred)"
    )
    life.add_argument(
        "--wrap",
        choices=["torus", "dead"],
        default="torus",
        help="torus: edges wrap around; dead: nothing lives beyond them",
    )
    life.add_argument(
        "--frame-every",
        type=whole(0, wire.MAX_GENS),
        default=1,
        metavar="K",
        help="a picture every K generations (at most 15/s; 0: none)",
    )
    life.add_argument(
        "--halo",
        type=whole(1, wire.MAX_HALO),
        default=wire.DEFAULT_HALO,
        metavar="K",
        help=f"rows exchanged every K generations (1-{wire.MAX_HALO}, "
        f"default {wire.DEFAULT_HALO}: measured)",
    )
    life.add_argument(
        "--pace",
        type=real(0, wire.MAX_PACE),
        default=0.0,
        metavar="GEN/S",
        help="at most this many generations a second, to watch (default 0: "
        "as fast as the nodes can)",
    )
    life.add_argument(
        "--checkpoint-every",
        type=whole(1, wire.MAX_GENS),
        default=wire.DEFAULT_CHECKPOINT,
        metavar="C",
        help="generations between checkpoints (default 1000)",
    )
    add_placement_flags(
        life, per_node="strips a node runs at most (default: as many as its agent offers)"
    )
    life.add_argument("--name", type=label, default="", help="a label for the display")
    life.add_argument("--wait", action="store_true", help="follow it until it ends")
    life.set_defaults(handler=run_life)

    listing = mqtt_verb("list", "every job the broker remembers, newest first")
    listing.set_defaults(handler=run_list)

    status = mqtt_verb("status", "one job in detail")
    status.add_argument("job", metavar="ID")
    status.set_defaults(handler=run_status)

    cancel = mqtt_verb("cancel", "stop a running job")
    cancel.add_argument("job", metavar="ID")
    cancel.set_defaults(handler=run_cancel)

    def db_verb(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(name, help=help_text)
        parser.add_argument("job", metavar="ID")
        parser.add_argument(
            "--db", type=Path, help="the coordinator's database (default: as 'piswarm head')"
        )
        return parser

    export = db_verb("export", "write a job's primes in order (or a Life board) to stdout")
    export.add_argument(
        "--format",
        choices=["txt", "bin", "rle"],
        default=None,
        help="primes: txt (one per line, the default) or bin (little-endian "
        "uint64); Life: rle (the default)",
    )
    export.add_argument("--output", "-o", type=Path, help="a file instead of stdout")
    export.set_defaults(handler=run_export)

    verify = db_verb(
        "verify",
        "primes: re-read every block, check pi(x); Life: recompute the board here and compare",
    )
    verify.add_argument(
        "--recompute",
        action="store_true",
        help="primes: also sieve every block again here and compare (finds "
        "a node that sent a list of the right length, not the primes)",
    )
    verify.set_defaults(handler=run_verify)


def add_coordinator_flags(parser: argparse.ArgumentParser) -> None:
    """The broker, the admin's login and how long to wait for the coordinator: what a
    command that talks to the coordinator takes (read by :func:`admin_settings`)."""
    add_broker_flags(parser)
    parser.add_argument("--credentials", type=Path, help="credentials file (default: the admin's)")
    parser.add_argument(
        "--timeout",
        type=real(0.1, 3600, unit=" s"),
        default=10.0,
        help="seconds to wait for the coordinator (default 10)",
    )


def admin_settings(args: argparse.Namespace) -> Any:
    """The broker, logged in as the admin (or as ``--credentials``)."""
    return broker_settings(vars(args), "admin")


def board_size(text: str) -> tuple[int, int]:
    """``4096x2048`` as (width, height), within what a Life job may be."""
    width, sep, height = text.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit():
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a size like 4096x4096")
    w, h = int(width), int(height)
    sides = span(wire.MIN_SIDE, wire.MAX_SIDE)
    if not (wire.MIN_SIDE <= w <= wire.MAX_SIDE and wire.MIN_SIDE <= h <= wire.MAX_SIDE):
        raise argparse.ArgumentTypeError(f"{text}: width and height are {sides}")
    if w * h > wire.MAX_CELLS:
        raise argparse.ArgumentTypeError(
            f"{text} is {readable(w * h)} cells, more than {readable(wire.MAX_CELLS)} "
            "(4096x8192 is the largest board)"
        )
    return w, h


def position(text: str) -> tuple[int, int]:
    x, sep, y = text.partition(",")
    if not sep or not x.strip().isdigit() or not y.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a position like 10,20")
    return int(x), int(y)


def describe(status: Any) -> str:
    """One line for a job status (and, on a second, why it waits, when it does)."""
    waiting = f"\n  {status.waiting}" if status.waiting else ""
    return _describe(status) + waiting


def _describe(status: Any) -> str:
    if status.kind == "life":
        return (
            f"{status.job}  {status.state:<9} life {status.width}x{status.height} "
            f"{status.wrap}  generation {status.gen:,}/{status.gens:,}  "
            f"{status.population:,} cells (gen {status.population_gen:,})  "
            f"{status.strips} strips on {len(status.nodes)} nodes  {status.rate:,.0f} gen/s  "
            f"eta {duration(status.eta_s)}" + (f"  hash {status.hash}" if status.hash else "")
        )
    largest = "-" if status.largest is None else f"{status.largest:,}"
    twins = "" if status.twins is None else f"  {status.twins:,} twin pairs"
    gap = "" if not status.gap else f"  largest gap {status.gap:,} after {status.gap_at:,}"
    return (
        f"{status.job}  {status.state:<9} [{status.start:,}, {status.end:,}]  "
        f"{status.blocks_done}/{status.blocks_total} blocks  {status.primes:,} primes"
        f"{twins}{gap}  largest {largest}  {status.rate:,.0f}/s  eta {duration(status.eta_s)}"
    )


def run_primes(args: argparse.Namespace) -> int:
    from piswarm.errors import ConfigError
    from piswarm.protocol import encode

    if args.start > args.end:
        raise ConfigError(f"START {readable(args.start)} is greater than END {readable(args.end)}")
    if args.block_size is not None and args.block_size > jobs.max_block(args.keep):
        raise ConfigError(
            f"--block-size {readable(args.block_size)} is more than {readable(jobs.MAX_BLOCK)}, "
            "the most a job keeping its primes may have: use --keep counts or smaller blocks"
        )
    request = jobs.PrimesRequest(
        start=args.start,
        end=args.end,
        block_size=args.block_size,
        name=args.name,
        keep=args.keep,
        double_check=args.double_check,
        request_id=f"cli-{uuid.uuid4().hex[:12]}",
        placement=placement_of(args),
    )
    encode(request)  # every limit checked here, before anything connects
    return submit_and_follow(args, request)


def submit_and_follow(args: argparse.Namespace, request: Any) -> int:
    """Submit a checked request, print its job id and, with ``--wait``, its progress."""
    from head.jobclient import JobClient
    from piswarm.errors import PiswarmError

    with JobClient(admin_settings(args), connect_timeout=args.timeout) as client:
        reply = client.submit(request, timeout=args.timeout)
        if not reply.ok or reply.job is None:
            raise PiswarmError(f"the coordinator refused the job: {reply.error}")
        print(reply.job, flush=True)
        if not args.wait:
            return 0

        def show(status: Any) -> None:
            print(describe(status), file=sys.stderr, flush=True)

        final = client.follow(reply.job, show, idle_timeout=max(args.timeout, 30.0))
    return 0 if final.state == "done" else 1


def run_life(args: argparse.Namespace) -> int:
    from head.patterns import read_pattern
    from piswarm.errors import ConfigError
    from piswarm.rle import RleError, parse_rle

    pattern = ""
    width, height = args.size
    if args.pattern is not None:
        pattern, source = read_pattern(args.pattern)
        try:
            shape = parse_rle(pattern, source)  # its errors name the file, line and column
        except RleError as exc:
            raise ConfigError(str(exc)) from None
        if shape.width > width or shape.height > height:
            raise ConfigError(
                f"--pattern {args.pattern}: {shape.width}x{shape.height} does not "
                f"fit a {width}x{height} board (--size)"
            )
        if args.at is not None and (
            args.at[0] > width - shape.width or args.at[1] > height - shape.height
        ):
            raise ConfigError(
                f"--at {args.at[0]},{args.at[1]}: the {shape.width}x{shape.height} "
                f"pattern must start at x 0-{width - shape.width} and y "
                f"0-{height - shape.height} to fit the board"
            )
    elif args.at is not None:
        raise ConfigError("--at places a --pattern; a --random soup fills the board")
    x, y = args.at if args.at is not None else (None, None)
    request = wire.LifeRequest(
        width=width,
        height=height,
        gens=args.gens,
        wrap=args.wrap,
        pattern=pattern,
        x=x,
        y=y,
        density=args.random,
        seed=args.seed,
        frame_every=args.frame_every,
        checkpoint_every=args.checkpoint_every,
        halo=args.halo,
        pace=args.pace,
        name=args.name,
        request_id=f"cli-{uuid.uuid4().hex[:12]}",
        placement=placement_of(args),
    )
    jobs.encode_request(request)  # every limit checked here, before anything connects
    return submit_and_follow(args, request)


def run_list(args: argparse.Namespace) -> int:
    from head.jobclient import JobClient

    with JobClient(admin_settings(args), connect_timeout=args.timeout) as client:
        statuses = client.snapshot()
    if not statuses:
        print("no jobs yet: start one with 'piswarm job primes 1 1e9'")
    for status in statuses:
        print(describe(status))
    return 0


def run_status(args: argparse.Namespace) -> int:
    from head.jobclient import JobClient
    from piswarm.errors import ConfigError, PiswarmError
    from piswarm.protocol import ProtocolError, topics
    from piswarm.protocol.life import LifeStatus

    try:
        status_topic = topics.job_status(args.job)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    with JobClient(admin_settings(args), connect_timeout=args.timeout) as client:
        found = client.snapshot(status_topic)
    if not found:
        raise PiswarmError(f"no job {args.job} (see 'piswarm job list')")
    s = found[0]
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created))
    print(describe(s))
    if s.placement is not None:
        print(f"  placed on: {s.placement.describe()}")
    if isinstance(s, LifeStatus):
        print(f"  name: {s.name or '-'}   submitted: {when}   epoch: {s.epoch}")
        print(f"  nodes: {', '.join(s.nodes) or '-'}")
        if s.error:
            print(f"  error: {s.error}")
        return 0
    print(
        f"  name: {s.name or '-'}   submitted: {when}   block size: {s.block_size:,}   "
        f"keeping: {s.keep}"
    )
    if s.finished is not None:
        print(f"  took: {s.finished - s.created:.1f} s")
    if s.double_check:
        wrong = f", wrong: {', '.join(s.wrong)}" if s.wrong else ""
        print(
            f"  double-checked: {s.checked:,} blocks agreed by two nodes "
            f"(asked {s.double_check:.0%}), {s.mismatches} mismatches{wrong}"
        )
    for c in s.top:
        print(f"  {c.node:<24} {c.blocks:>8} blocks {c.primes:>14,} primes")
    return 0


def run_cancel(args: argparse.Namespace) -> int:
    from head.jobclient import JobClient
    from piswarm.errors import ConfigError, PiswarmError
    from piswarm.protocol import ProtocolError, topics
    from piswarm.protocol.jobs import CancelRequest

    try:
        request = CancelRequest(job=args.job, request_id=f"cli-{uuid.uuid4().hex[:12]}")
        topics.validate_job_id(args.job)
    except ProtocolError as exc:
        raise ConfigError(str(exc)) from None
    with JobClient(admin_settings(args), connect_timeout=args.timeout) as client:
        reply = client.request(topics.JOBS_CANCEL, request, timeout=args.timeout)
    if not reply.ok:
        raise PiswarmError(f"not cancelled: {reply.error}")
    print(f"{args.job} cancelled")
    return 0


@contextlib.contextmanager
def _store(args: argparse.Namespace) -> Iterator[Any]:
    from head.coordinator.jobstore import JobStore
    from piswarm.errors import PiswarmError

    path = jobs_db(args.db)
    if not path.exists():
        raise PiswarmError(f"no job database at {path} (run this on the head node, or --db)")
    store = JobStore(path).open(readonly=True)
    try:
        store.require(args.job)
    except KeyError:
        store.close()
        raise PiswarmError(f"no job {args.job} in {path}") from None
    try:
        yield store
    finally:
        store.close()


def _write_primes(store: Any, job: str, fmt: str, out: BinaryIO) -> int:
    from head.coordinator.prime_text import decimal_lines

    written = 0
    for block in store.export(job):
        if fmt == "bin":
            out.write(block.astype("<u8").tobytes())
        else:
            out.write(decimal_lines(block))
        written += int(block.size)
    return written


def _life_board(args: argparse.Namespace) -> Any:
    """The Life job's record and latest board, from the database read-only."""
    from head.coordinator.lifestore import LifeStore
    from piswarm.errors import PiswarmError

    path = jobs_db(args.db)
    if not path.exists():
        raise PiswarmError(f"no job database at {path} (run this on the head node, or --db)")
    store = LifeStore(path).open(readonly=True)
    try:
        return store.get(args.job), store.board(args.job)
    except (KeyError, sqlite3.OperationalError):
        raise PiswarmError(f"no Life job {args.job} in {path}") from None
    finally:
        store.close()


def _is_life(args: argparse.Namespace) -> bool:
    """Whether the job is a Life job: asked of the database, never read from the id."""
    from head.coordinator.lifestore import LifeStore

    path = jobs_db(args.db)
    if not path.exists():
        return False  # the primes path says there is no database
    store = LifeStore(path).open(readonly=True)
    try:
        return store.has(args.job)
    except sqlite3.OperationalError:  # a database from before Life jobs
        return False
    finally:
        store.close()


def run_export_life(args: argparse.Namespace) -> int:
    from piswarm.errors import ConfigError
    from piswarm.life import unpack
    from piswarm.rle import format_rle

    if args.format not in (None, "rle"):
        raise ConfigError(f"a Life board exports as rle, not {args.format}")
    record, board = _life_board(args)
    request = record.request
    if board.gen < request.gens:
        print(
            f"warning: job {args.job} has reached generation {board.gen} of {request.gens}: "
            "exporting its latest checkpoint",
            file=sys.stderr,
        )
    text = format_rle(
        unpack(board.cells, request.width),
        name=f"{args.job} generation {board.gen}",
        comments=(
            f"piswarm Life job {args.job}: {request.width} x {request.height} "
            f"{request.wrap}, generation {board.gen}, population "
            f"{board.population}, hash {board.hash}",
        ),
    )
    if args.output is not None:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    print(f"generation {board.gen}: {board.population:,} cells exported", file=sys.stderr)
    return 0


def run_verify_life(args: argparse.Namespace) -> int:
    from head.coordinator.life_board import board_hash, initial_board
    from piswarm.life import step

    record, board = _life_board(args)
    request = record.request
    again = step(initial_board(request), request.width, request.wrap, board.gen)
    if board_hash(again) != board.hash or not (again == board.cells).all():
        print(
            f"{args.job}: MISMATCH at generation {board.gen}: stored hash {board.hash}, "
            f"recomputed here {board_hash(again)}"
        )
        return 1
    print(
        f"{args.job}: OK: generation {board.gen} recomputed here in one process is the same "
        f"board bit for bit (hash {board.hash}, {board.population:,} cells)"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from piswarm.errors import ConfigError, PiswarmError

    if _is_life(args):
        return run_export_life(args)
    if args.format == "rle":
        raise ConfigError(f"job {args.job} is a prime search: export it as txt or bin")
    fmt = args.format or "txt"
    with _store(args) as store:
        progress = store.progress(args.job)
        if progress.blocks_done < progress.blocks_total:
            missing = progress.blocks_total - progress.blocks_done
            print(
                f"warning: job {args.job} misses {missing} blocks: the list has gaps",
                file=sys.stderr,
            )
        if args.output is not None:
            with args.output.open("wb") as out:
                count = _write_primes(store, args.job, fmt, out)
        else:
            try:
                count = _write_primes(store, args.job, fmt, sys.stdout.buffer)
                sys.stdout.buffer.flush()
            except BrokenPipeError:
                raise  # '| head': piswarm.cli ends quietly
            except OSError as exc:
                raise PiswarmError(f"cannot write the primes: {exc}") from None
    print(f"{count:,} primes exported", file=sys.stderr)
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from head.coordinator.jobstore import KNOWN_PI

    if _is_life(args):
        return run_verify_life(args)
    recompute = None
    if args.recompute:
        from piswarm.sieve_backends import select_backend

        recompute = select_backend("auto").primes
    with _store(args) as store:
        problems = store.verify(args.job, recompute)
        progress = store.progress(args.job)
    if problems:
        for problem in problems:
            print(f"{args.job}: {problem}")
        return 1
    known = ""
    if progress.start <= 2 and progress.end in KNOWN_PI:
        known = f", pi({progress.end:.0e}) = {KNOWN_PI[progress.end]:,} as it should be"
    checked = "sieved again here and identical" if args.recompute else "CRC-32 and range checked"
    twins = "" if progress.twins is None else f", {progress.twins:,} twin pairs"
    print(
        f"{args.job}: OK: {progress.blocks_done} blocks, {progress.primes:,} primes{twins}, "
        f"every block's {checked}{known}"
    )
    return 0
