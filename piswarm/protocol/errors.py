"""Errors of the wire protocol.

    ProtocolError            a payload or topic that does not follow docs/topics.md
    └── (raised by every decoder and topic parser; carries the reason in one line)

Decoders never raise anything else for bad input: callers catch ``ProtocolError``, log it,
count it and carry on.
"""


class ProtocolError(ValueError):
    """A payload or topic that does not follow the documented protocol."""

    def __init__(self, reason: str, *, topic: str | None = None) -> None:
        self.reason = reason
        self.topic = topic
        super().__init__(f"{topic}: {reason}" if topic else reason)
