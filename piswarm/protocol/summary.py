"""What a count-only result says on the wire: a block's summary, or several of them.

JSON, and free of numpy (the agent's main process sends these without loading it):
:mod:`piswarm.protocol.counts` makes summaries from primes, checks them and adds them up.
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError
from piswarm.protocol.jobs import MAX_BLOCKS, MAX_NUMBER, MAX_PRIME_GAP

MAX_SUMMARY_BYTES = 512
MAX_SUMMARIES = 64
"""Summaries one message may carry (:class:`Summaries`): a node's ready results."""
MAX_SUMMARIES_BYTES = MAX_SUMMARIES * MAX_SUMMARY_BYTES

_NUMBER = spec(lo=0, hi=MAX_NUMBER)


@dataclass(frozen=True)
class BlockSummary:
    """One block's primes in numbers (a count-only result)."""

    count: int = field(metadata=_NUMBER)
    first: int = field(metadata=_NUMBER)  # 0 when the block holds no prime
    last: int = field(metadata=_NUMBER)  # 0 when the block holds no prime
    twins: int = field(metadata=_NUMBER)  # pairs (p, p + 2) with both in the block
    gap: int = field(metadata=spec(lo=0, hi=MAX_PRIME_GAP))  # 0: fewer than two primes
    gap_at: int = field(metadata=_NUMBER)  # the prime before the first largest gap (0: none)
    crc32: int = field(metadata=spec(lo=0, hi=2**32 - 1))
    kind: Literal["counts"] = "counts"


@dataclass(frozen=True)
class Summaries:
    """Several blocks' summaries of one job in one message, on
    ``piswarm/nodes/<node>/results/<job>/summaries``: a node sends the results it has
    ready together, and the head takes them for the cost of one message. ``blocks[i]``
    is the block of ``summaries[i]``; each is checked and acknowledged on its own."""

    blocks: tuple[int, ...] = field(metadata=spec(lo=0, hi=MAX_BLOCKS - 1, max_len=MAX_SUMMARIES))
    summaries: tuple[BlockSummary, ...] = field(metadata=spec(max_len=MAX_SUMMARIES))
    kind: Literal["summaries"] = "summaries"

    def __post_init__(self) -> None:
        if not self.blocks or len(self.blocks) != len(self.summaries):
            raise ProtocolError("summaries need one block number each, and at least one")
        if len(set(self.blocks)) != len(self.blocks):
            raise ProtocolError("a block is listed twice")


def decode_summary(payload: bytes) -> BlockSummary:
    return _schema.decode(BlockSummary, payload, max_bytes=MAX_SUMMARY_BYTES)


def encode_summary(summary: BlockSummary) -> bytes:
    return _schema.encode(summary, max_bytes=MAX_SUMMARY_BYTES)


def decode_summaries(payload: bytes) -> Summaries:
    return _schema.decode(Summaries, payload, max_bytes=MAX_SUMMARIES_BYTES)


def encode_summaries(batch: Summaries) -> bytes:
    return _schema.encode(batch, max_bytes=MAX_SUMMARIES_BYTES)


def is_summary(payload: bytes) -> bool:
    """Whether a result payload is a summary (JSON) rather than an encoded block."""
    return payload[:1] == b"{"
