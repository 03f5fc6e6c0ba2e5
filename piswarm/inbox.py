"""The queue between paho's network thread and the thread that handles messages.

Bounded twice: in messages, and in payload bytes. A count alone lets a few large
messages hold gigabytes (10,000 results of 8 MiB, the broker's packet limit: 80 GB, of
which 6.9 GB were seen held by a coordinator); bytes alone let a flood of tiny ones cost
their per-message overhead. A message larger than the byte bound is still taken when the
queue is empty, so no payload the broker accepts is refused for its size alone. A full
inbox refuses with :class:`queue.Full`: the caller counts and logs what it drops.
"""

import queue
from typing import Any, TypeVar

T = TypeVar("T", bound=tuple[Any, ...])

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class Inbox(queue.Queue[T]):
    """A :class:`queue.Queue` of ``(topic, payload, ...)`` tuples; see the module."""

    def __init__(self, *, maxsize: int, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if maxsize < 1 or max_bytes < 1:
            raise ValueError("an inbox holds at least one message and one byte")
        super().__init__(maxsize)
        self.max_bytes = max_bytes
        self.bytes = 0  # payload bytes queued now (under the queue's mutex)

    def put_nowait(self, item: T) -> None:
        size = len(item[1])
        with self.not_full:
            if self._qsize() >= self.maxsize or (
                self._qsize() and self.bytes + size > self.max_bytes
            ):
                raise queue.Full
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def take(self, limit: int) -> list[T]:
        """Up to ``limit`` items, oldest first, without waiting: one lock for them all
        (a kiosk drains thousands a second; one ``get`` each took a lock each)."""
        with self.not_empty:
            count = min(limit, self._qsize())
            taken = [self._get() for _ in range(count)]
            if count:
                self.not_full.notify(count)
        return taken

    def _put(self, item: T) -> None:
        super()._put(item)
        self.bytes += len(item[1])

    def _get(self) -> T:
        item = super()._get()
        self.bytes -= len(item[1])
        return item
