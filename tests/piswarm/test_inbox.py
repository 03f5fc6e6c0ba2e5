"""The inbox between paho's thread and a handler: bounded in messages and in bytes."""

import queue

import pytest

from piswarm.inbox import Inbox


def test_an_inbox_is_bounded_in_bytes_as_well_as_in_messages():
    inbox = Inbox(maxsize=100, max_bytes=1000)
    for _ in range(3):
        inbox.put_nowait(("t", bytes(300)))
    with pytest.raises(queue.Full):
        inbox.put_nowait(("t", bytes(300)))  # 1200 bytes would be queued
    inbox.put_nowait(("t", bytes(100)))  # 1000: still fits
    assert (inbox.qsize(), inbox.bytes) == (4, 1000)
    assert inbox.get_nowait() == ("t", bytes(300))
    assert inbox.bytes == 700


def test_one_message_larger_than_the_bound_passes_an_empty_inbox_only():
    inbox = Inbox(maxsize=100, max_bytes=1000)
    inbox.put_nowait(("big", bytes(5000)))  # the broker took it: so does an empty inbox
    with pytest.raises(queue.Full):
        inbox.put_nowait(("small", b"x"))
    assert inbox.get(timeout=1)[0] == "big" and inbox.bytes == 0


def test_an_inbox_is_bounded_in_messages():
    inbox = Inbox(maxsize=2, max_bytes=10**9)
    inbox.put_nowait(("a", b""))
    inbox.put_nowait(("b", b""))
    with pytest.raises(queue.Full):
        inbox.put_nowait(("c", b""))
