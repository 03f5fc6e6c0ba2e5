"""``piswarm deploy``: the inventory now; push and the rest arrive with the deploy issue."""

import argparse
import sys
from pathlib import Path
from typing import Any

LATER = ("push", "status", "stop", "start", "restart", "logs", "uninstall", "forget", "broker")


def register(sub: Any) -> None:
    from piswarm.cli import not_yet

    deploy = sub.add_parser("deploy", help="the fleet's inventory (push and the rest to come)")
    verbs = deploy.add_subparsers(dest="verb", metavar="VERB", parser_class=type(deploy))
    verbs.required = True
    inventory = verbs.add_parser(
        "inventory", help="check a pi_list.txt, or write one from ranges (--range)"
    )
    inventory.add_argument("file", nargs="?", type=Path,
                           help="an inventory to check (default: pi_list.txt)")  # fmt: skip
    inventory.add_argument("--range", action="append", default=[], metavar="PATTERN",
                           help="write an inventory for these addresses, e.g. "
                           "'192.168.[4:67].[1:3]' (repeatable)")  # fmt: skip
    inventory.add_argument("--user", help="log in as this user (written into each line)")
    inventory.add_argument("--port", type=int, default=22, help="SSH port (default 22)")
    inventory.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    inventory.set_defaults(handler=run_inventory)
    for verb in LATER:
        later = verbs.add_parser(verb, help="not yet available")
        later.add_argument("rest", nargs=argparse.REMAINDER)
        later.set_defaults(handler=not_yet(f"piswarm deploy {verb}", "the fleet deployment issue"))


def run_inventory(args: argparse.Namespace) -> int:
    from deploy.inventory import InventoryError, parse_inventory, parse_line, render_inventory
    from piswarm.errors import ConfigError

    if args.range:
        if args.file is not None:
            raise ConfigError("give either a FILE to check or --range to write one, not both")
        if not 1 <= args.port <= 65535:
            raise ConfigError(f"--port {args.port} is not in 1-65535")
        user = f"{args.user}@" if args.user else ""
        port = f":{args.port}" if args.port != 22 else ""
        text = "\n".join(f"{user}{pattern}{port}" for pattern in args.range)
        try:
            hosts = [h for n, line in enumerate(text.splitlines(), 1) for h in parse_line(line, n)]
        except InventoryError as exc:
            raise ConfigError(f"--range: {exc}") from None
        checked = parse_inventory(render_inventory(hosts))
        if checked.problems:
            raise ConfigError(f"--range: {checked.problems[0]}")
        out = render_inventory(hosts, header="written by: piswarm deploy inventory --range "
                               + " --range ".join(args.range))  # fmt: skip
        if args.output is not None:
            args.output.write_text(out)
            print(f"{len(hosts)} hosts written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(out)
        return 0
    path = args.file or Path("pi_list.txt")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    inventory = parse_inventory(text)
    for problem in inventory.problems:
        print(f"{path}: {problem}")
    print(f"{path}: {len(inventory.hosts)} hosts, {len(inventory.problems)} problems")
    return 1 if inventory.problems else 0
