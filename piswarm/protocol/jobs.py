"""Job requests: what the CLI and a raw ``mosquitto_pub`` send to start work.

Only the prime search exists so far (the Game of Life joins it). A request is validated
in full before anything is stored: a range the sieve cannot do, a block size that would
make millions of blocks, or a typo gets a :class:`ProtocolError` that names the field.
"""

from dataclasses import dataclass, field
from typing import Literal

from piswarm.protocol import _schema
from piswarm.protocol._schema import spec
from piswarm.protocol.errors import ProtocolError

MAX_NUMBER = 2**63 - 1  # SQLite integers and the sieves stop here
MIN_BLOCK = 10_000
MAX_BLOCK = 2_000_000_000
MAX_BLOCKS = 1_000_000
DEFAULT_BLOCK = 10_000_000  # ~0.1 s of numpy sieving, ~280 kB encoded near 1e9


@dataclass(frozen=True)
class PrimesRequest:
    """Find every prime in ``[start, end]`` (both inclusive, as people say a range)."""

    start: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    end: int = field(metadata=spec(lo=0, hi=MAX_NUMBER))
    block_size: int = field(default=DEFAULT_BLOCK, metadata=spec(lo=MIN_BLOCK, hi=MAX_BLOCK))
    kind: Literal["primes"] = "primes"
    name: str = field(default="", metadata=spec(max_len=80))

    def __post_init__(self) -> None:
        if self.start > self.end:
            raise ProtocolError(f"start {self.start} is greater than end {self.end}")
        if self.blocks > MAX_BLOCKS:
            raise ProtocolError(
                f"{self.blocks} blocks of {self.block_size} is more than {MAX_BLOCKS}: "
                "use a larger block_size"
            )

    @property
    def blocks(self) -> int:
        return -(-(self.end - self.start + 1) // self.block_size)

    def block_range(self, index: int) -> tuple[int, int]:
        """Block ``index`` as a half-open ``[lo, hi)``."""
        lo = self.start + index * self.block_size
        return lo, min(lo + self.block_size, self.end + 1)


def decode_request(payload: bytes) -> PrimesRequest:
    """A job request from the wire; unknown ``kind`` values are named in the error."""
    data = _schema.load_json(payload)
    kind = data.get("kind")
    if kind != "primes":
        raise ProtocolError(f"unknown job kind {kind!r} (known: 'primes')")
    return _schema.decode_mapping(PrimesRequest, data)
