"""Where a job may run: a part of the room, named in a job request.

A :class:`Placement` travels inside a prime-search or Life request (``"placement"``) and
comes back in the job's status. It names

- ``nodes``: node ids or globs (``pi-0[4-9]-*``, ``sim-00?``: ``*``, ``?``, ``[...]`` and
  ``[!...]`` as in a shell); a node may take part when it matches one of them; none
  named: every node may;
- ``count``: "any N": at most this many of those nodes at a time (the first to ask);
- ``per_node``: at most this many of the job's blocks computed on a node at once (its
  workers), or Life strips run on it.

Anything not named is not limited: ``{}`` is the whole room, as a request without one.
"""

import fnmatch
import functools
import re
from dataclasses import dataclass, field

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError

MAX_PATTERNS = 1000
"""Ids or globs one placement may list: a lab of 240 Pis by name (the request's JSON must
still fit piswarm's 16 KiB), or a few globs."""
MAX_COUNT = 1_000_000
MAX_PER_NODE = 1024
NODE_PATTERN = re.compile(r"[a-z0-9*?\[\]!-]{1,64}")
"""A node id, or a glob over them: the id's characters, and ``* ? [ ] !``."""


@dataclass(frozen=True)
class Placement:
    """Which nodes may run a job, how many of them, and how much of each."""

    nodes: tuple[str, ...] = field(
        default=(), metadata=spec(pattern=NODE_PATTERN.pattern, max_len=MAX_PATTERNS)
    )
    count: int | None = field(default=None, metadata=spec(lo=1, hi=MAX_COUNT))
    per_node: int | None = field(default=None, metadata=spec(lo=1, hi=MAX_PER_NODE))

    def __post_init__(self) -> None:
        for pattern in self.nodes:
            if pattern.count("[") != pattern.count("]"):
                raise ProtocolError(f"field 'nodes': {pattern!r} has an unclosed '['")
        if len(set(self.nodes)) != len(self.nodes):
            raise ProtocolError("field 'nodes': a name is listed twice")

    @property
    def limited(self) -> bool:
        """False for ``{}``: the whole room, as no placement at all."""
        return bool(self.nodes) or self.count is not None or self.per_node is not None

    def admits(self, node: str) -> bool:
        """Whether ``node`` matches the named nodes (every node, when none are named)."""
        if not self.nodes:
            return True
        names, globs = _matcher(self.nodes)
        return node in names or (globs is not None and globs.fullmatch(node) is not None)

    def describe(self) -> str:
        """The placement in a few words: ``pi-0[4-9]-*, any 4, 2 per node``."""
        parts = [", ".join(self.nodes)] if self.nodes else []
        if self.count is not None:
            parts.append(f"any {self.count}")
        if self.per_node is not None:
            parts.append(f"{self.per_node} per node")
        return "; ".join(parts) or "any node"


_GLOB = re.compile(r"[*?\[\]!]")


@functools.lru_cache(maxsize=256)
def _matcher(patterns: tuple[str, ...]) -> "tuple[frozenset[str], re.Pattern[str] | None]":
    """A placement's plain ids as a set (a run of 240 nodes by name is one lookup), and
    one regular expression for all its globs (case-sensitive: node ids are lower-case)."""
    names = frozenset(p for p in patterns if not _GLOB.search(p))
    globs = [p for p in patterns if p not in names]
    if not globs:
        return names, None
    return names, re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in globs))


def encode_placement(placement: Placement) -> bytes:
    return _schema.encode(placement)


def decode_placement(payload: bytes) -> Placement:
    return _schema.decode(Placement, payload)
