"""``python -m node_agent agent|sim``: the node's command without the head's parts.

What ``piswarm deploy`` runs on a Pi, where only piswarm/ and node_agent/ are installed.
"""

import sys

from piswarm.cli import Parser, add_logging_flags, run


def main() -> int:
    from node_agent.cli import register

    parser = Parser(prog="python -m node_agent", description="the piswarm node agent")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    register(sub)
    for command in sub.choices.values():
        add_logging_flags(command)
    return run(parser, sys.argv[1:])


if __name__ == "__main__":  # spawned sieve workers import this module too
    raise SystemExit(main())
