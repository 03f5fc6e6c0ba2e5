"""``--nodes``, ``--any`` and ``--per-node``: the part of the room a job may run on."""

import argparse
from collections.abc import Sequence

from piswarm.errors import ConfigError
from piswarm.flags import whole
from piswarm.protocol.placement import (
    MAX_COUNT,
    MAX_PATTERNS,
    MAX_PER_NODE,
    NODE_PATTERN,
    Placement,
)


def node_patterns(text: str) -> list[str]:
    """``pi-01-a,pi-0[4-9]-*``: node ids or globs, comma-separated."""
    patterns = [p.strip() for p in text.split(",") if p.strip()]
    if not patterns:
        raise argparse.ArgumentTypeError("name a node id or a glob such as 'pi-0[4-9]-*'")
    for pattern in patterns:
        if not NODE_PATTERN.fullmatch(pattern):
            raise argparse.ArgumentTypeError(
                f"{pattern[:70]!r} is not a node id or glob (lower-case letters, digits, "
                "'-', and * ? [ ] !)"
            )
        if pattern.count("[") != pattern.count("]"):
            raise argparse.ArgumentTypeError(f"{pattern!r} has an unclosed '['")
    return patterns


node_patterns.__name__ = "node list"


def add_placement_flags(parser: argparse.ArgumentParser, *, per_node: str) -> None:
    """The three flags; ``per_node`` says what a node's share is (blocks, strips)."""
    parser.add_argument(
        "--nodes",
        type=node_patterns,
        action="extend",
        metavar="IDS",
        help="run only on these nodes: ids or globs, comma-separated or repeated "
        "(e.g. 'pi-0[4-9]-*,pi-10-a'; default: any node)",
    )
    parser.add_argument(
        "--any",
        type=whole(1, MAX_COUNT),
        metavar="N",
        help="run on at most N nodes at a time (the first to ask; another takes the place "
        "of one that leaves)",
    )
    parser.add_argument("--per-node", type=whole(1, MAX_PER_NODE), metavar="N", help=per_node)


def placement_of(args: argparse.Namespace) -> Placement | None:
    """The placement the flags name (``None``: the whole room)."""
    nodes: Sequence[str] = args.nodes or ()
    if not nodes and args.any is None and args.per_node is None:
        return None
    unique = tuple(dict.fromkeys(nodes))
    if len(unique) > MAX_PATTERNS:
        raise ConfigError(f"--nodes: {len(unique)} names; at most {MAX_PATTERNS} (use a glob)")
    return Placement(nodes=unique, count=args.any, per_node=args.per_node)  # each part checked
