"""The ``piswarm`` command: one entry point, a subcommand per role.

Each role registers its own subcommands (``node_agent.cli``, ``broker.cli``, ``head.cli.views``)
and imports its heavy dependencies only when run, so a Pi with just paho-mqtt, psutil and
numpy can run ``piswarm agent``. Errors are one line on stderr and an exit code:
0 ok, 1 failed, 2 bad usage or configuration, 3 already running, 130 interrupted.
"""

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from piswarm import __version__, logs
from piswarm.errors import PiswarmError
from piswarm.protocol import ProtocolError

log = logging.getLogger(__name__)

Handler = Callable[[argparse.Namespace], int]


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line: what is wrong, and where to look."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def add_logging_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="how much to log on stderr (default INFO)",
    )


def _finish_leaves(sub: "argparse._SubParsersAction[Parser]") -> None:
    """On every (sub)command that runs something: ``--log-level``, and its full name
    (``piswarm job primes``), which prefixes its errors as argparse prefixes its own."""
    for parser in sub.choices.values():
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            for action in nested:
                _finish_leaves(action)
            continue
        if not any(a.dest == "log_level" for a in parser._actions):
            add_logging_flags(parser)
        parser.set_defaults(prog=parser.prog)


def build_parser() -> Parser:
    from broker.cli import register as register_broker
    from demo.cli import register as register_demo
    from deploy.cli import register as register_deploy
    from head.cli.experiment import register as register_experiment
    from head.cli.jobs import register as register_jobs
    from head.cli.views import register as register_head
    from node_agent.cli import register as register_agent

    parser = Parser(
        prog="piswarm",
        description="A room of Raspberry Pis as one parallel computer you can watch.",
    )
    parser.add_argument("--version", action="version", version=f"piswarm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    register_agent(sub)
    register_broker(sub)
    register_head(sub)
    register_jobs(sub)
    register_experiment(sub)
    register_deploy(sub)
    register_demo(sub)
    _finish_leaves(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, set up logging, run the handler; errors become one line and an exit code."""
    args = parser.parse_args(argv)
    logs.setup(getattr(logging, args.log_level))
    handler: Handler = args.handler
    try:
        code = handler(args)
        sys.stdout.flush()  # here, where a closed pipe is caught, not at exit
        return code
    except BrokenPipeError:  # '| head': the reader has all it wanted
        # Python's own advice: point stdout at devnull so the exit flush is quiet too.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except PiswarmError as exc:
        print(f"{args.prog}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ProtocolError as exc:
        print(f"{args.prog}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)
