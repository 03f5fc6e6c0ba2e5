"""What each long-running process says about the bad input it has met.

Topic (docs/topics.md has an example):

- ``piswarm/health/<name>``  retained, QoS 0: :class:`Health`. ``<name>`` is a node id for
  an agent, ``coordinator`` for the coordinator (a reserved id: no node can take it).

Each process publishes when a counter has changed (at most every ``HEALTH_MIN_GAP_S``) and
otherwise every ``HEALTH_EVERY_S``, so ``ts`` tells a live process from a gone one.
``piswarm status --health`` prints them.
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.topics import NODE_ID_PATTERN

HEALTH_MIN_GAP_S = 5.0
HEALTH_EVERY_S = 60.0
_COUNT = spec(lo=0, hi=2**53)


@dataclass(frozen=True)
class Health:
    """Counters since the process started; every one of them is also logged when it grows
    (rate-limited: see piswarm/logs.py)."""

    name: str = field(metadata=spec(pattern=NODE_ID_PATTERN.pattern))
    process: Literal["agent", "coordinator"]
    ts: float = field(metadata=spec(lo=0, hi=1e11))
    started: float = field(metadata=spec(lo=0, hi=1e11))
    malformed: int = field(metadata=_COUNT)  # messages that broke the protocol, ignored
    refused: int = field(metadata=_COUNT)  # well-formed but not allowed (or refused to us)
    dropped: int = field(metadata=_COUNT)  # messages lost to a full queue or an absent link
    errors: int = field(metadata=_COUNT)  # internal errors: a bug, with a traceback logged

    def counters(self) -> tuple[int, int, int, int]:
        return (self.malformed, self.refused, self.dropped, self.errors)


def decode_health(payload: bytes) -> Health:
    return _schema.decode(Health, payload)


class HealthClock:
    """When a process's next :class:`Health` is due: soon after a counter changes, and
    every ``HEALTH_EVERY_S`` regardless. Pure: the caller passes ``now`` and the counters."""

    def __init__(self) -> None:
        self._sent: tuple[int, ...] | None = None
        self._at = float("-inf")

    def due(self, now: float, counters: tuple[int, ...]) -> bool:
        changed = counters != self._sent
        if (changed and now - self._at >= HEALTH_MIN_GAP_S) or now - self._at >= HEALTH_EVERY_S:
            self._sent, self._at = counters, now
            return True
        return False
