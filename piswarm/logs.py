"""Logging for every piswarm process: one format, and warnings that cannot flood the log.

A classroom can send thousands of bad messages a second, and each is logged where it is
ignored. :class:`Throttle` lets the first ``burst`` warnings (and errors) of each kind
through in every ``window`` seconds and counts the rest; the next one of that kind that is
let through says how many were not logged. A kind is a logger and its message template
(not the formatted text, which carries the payload), so the counters every process keeps
still count each message. Nothing is rate-limited below WARNING or at CRITICAL.
"""

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Throttle(logging.Filter):
    """Rate limits WARNING and ERROR records per (logger, template)."""

    def __init__(
        self,
        *,
        burst: int = 5,
        window: float = 60.0,
        max_kinds: int = 512,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.burst = burst
        self.window = window
        self.max_kinds = max_kinds
        self.clock = clock
        self.suppressed = 0  # in all, since the start
        self._kinds: OrderedDict[tuple[str, str], list[float | int]] = OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if not logging.WARNING <= record.levelno < logging.CRITICAL:
            return True
        now = self.clock()
        key = (record.name, str(record.msg))
        state = self._kinds.get(key)  # [window start, let through, held back]
        if state is None or now - float(state[0]) >= self.window:
            held = 0 if state is None else int(state[2])
            self._kinds[key] = [now, 1, 0]
            self._kinds.move_to_end(key)
            while len(self._kinds) > self.max_kinds:
                self._kinds.popitem(last=False)
            if held:
                record.msg = f"{record.msg} [{held} more like this were not logged]"
            return True
        if int(state[1]) < self.burst:
            state[1] = int(state[1]) + 1
            return True
        state[2] = int(state[2]) + 1
        self.suppressed += 1
        return False


def setup(level: int | str, *, stream: TextIO | None = None) -> Throttle:
    """Log to ``stream`` (stderr) at ``level``, bad-input warnings rate-limited."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    throttle = Throttle()
    handler.addFilter(throttle)
    logging.basicConfig(level=level, handlers=[handler])
    return throttle
