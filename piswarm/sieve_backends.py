"""Which sieve a node uses: the portable numpy one, or libprimesieve when it is installed.

``libprimesieve`` (Debian / Raspberry Pi OS package ``libprimesieve11``) is a C++ sieve
about 6x faster than numpy at counting (more at listing); it is loaded with ctypes, so
nothing is compiled here and the agent still needs only numpy when the library is absent.
Both backends answer the same two questions for a half-open range ``[lo, hi)`` and are
checked against each other by the tests. The chosen backend and its version go into the
node's metadata.
"""

import ctypes
import ctypes.util
import logging
import weakref
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:  # numpy is imported where primes are made: the agent's main process,
    import numpy as np  # which only chooses a backend, never loads it (faster start, less RAM)

log = logging.getLogger(__name__)

BackendName = Literal["auto", "numpy", "primesieve"]

_UINT64_PRIMES = 13  # primesieve.h: the enum value for uint64_t arrays
_ERROR = 2**64 - 1  # PRIMESIEVE_ERROR
_LIBRARY_NAMES = ("primesieve", "libprimesieve.so.12", "libprimesieve.so.11")
CHUNK = 10**7  # numbers per libprimesieve call when listing a long range


class SieveBackend(Protocol):
    name: str
    version: str

    def primes(self, lo: int, hi: int) -> "np.ndarray":
        """Primes ``p`` with ``lo <= p < hi``, ascending uint64."""
        ...

    def count(self, lo: int, hi: int) -> int:
        """How many primes ``p`` have ``lo <= p < hi``."""
        ...


class NumpyBackend:
    """The portable default (see :mod:`piswarm.sieve`)."""

    name = "numpy"

    def __init__(self) -> None:
        import numpy as np

        from piswarm.sieve import SegmentedSieve

        self.version = np.__version__
        self._sieve = SegmentedSieve()

    def primes(self, lo: int, hi: int) -> "np.ndarray":
        return self._sieve.primes(lo, hi)

    def count(self, lo: int, hi: int) -> int:
        return self._sieve.count(lo, hi)


class PrimesieveBackend:
    """libprimesieve through ctypes, one thread (agents run one worker per core)."""

    name = "primesieve"

    def __init__(self, lib: ctypes.CDLL) -> None:
        u64, size_t = ctypes.c_uint64, ctypes.c_size_t
        lib.primesieve_generate_primes.argtypes = [u64, u64, ctypes.POINTER(size_t), ctypes.c_int]
        lib.primesieve_generate_primes.restype = ctypes.c_void_p
        lib.primesieve_count_primes.argtypes = [u64, u64]
        lib.primesieve_count_primes.restype = u64
        lib.primesieve_free.argtypes = [ctypes.c_void_p]
        lib.primesieve_free.restype = None
        lib.primesieve_set_num_threads.argtypes = [ctypes.c_int]
        lib.primesieve_set_num_threads.restype = None
        lib.primesieve_version.argtypes = []
        lib.primesieve_version.restype = ctypes.c_char_p
        lib.primesieve_set_num_threads(1)
        self._lib = lib
        self.version = lib.primesieve_version().decode()

    @classmethod
    def load(cls) -> "PrimesieveBackend | None":
        """The backend when libprimesieve can be loaded here, else None."""
        for name in _LIBRARY_NAMES:
            path = ctypes.util.find_library(name) if "." not in name else name
            if not path:
                continue
            try:
                return cls(ctypes.CDLL(path))
            except (OSError, AttributeError) as exc:
                log.debug("cannot use %s: %s", path, exc)
        return None

    def primes(self, lo: int, hi: int) -> "np.ndarray":
        """One call into libprimesieve for a block; a long range in blocks of ``CHUNK``
        copied into one array sized by a bound on the count (measured on [1e9, 2e9): one
        call 0.36 s, blocks 0.29 s)."""
        import numpy as np

        if hi - lo <= CHUNK:
            return self._generate(lo, hi)
        from piswarm.sieve import count_bound

        out = np.empty(count_bound(lo, hi), dtype=np.uint64)
        done = 0
        for start in range(lo, hi, CHUNK):
            part = self._generate(start, min(hi, start + CHUNK))
            out[done : done + part.size] = part
            done += part.size
        return out[:done]

    def _generate(self, lo: int, hi: int) -> "np.ndarray":
        import numpy as np

        if hi <= lo or hi <= 2:
            return np.zeros(0, dtype=np.uint64)
        size = ctypes.c_size_t(0)
        ptr = self._lib.primesieve_generate_primes(lo, hi - 1, ctypes.byref(size), _UINT64_PRIMES)
        if not ptr:
            if size.value == 0 and ctypes.get_errno() == 0:
                return np.zeros(0, dtype=np.uint64)
            raise RuntimeError(f"libprimesieve failed on [{lo}, {hi})")
        # No copy (380 MB for [1e9, 2e9)): the array uses libprimesieve's buffer, which
        # is freed when the last numpy view of it is garbage collected.
        buffer = (ctypes.c_uint64 * size.value).from_address(ptr)
        weakref.finalize(buffer, self._lib.primesieve_free, ptr)
        return np.ctypeslib.as_array(buffer)

    def count(self, lo: int, hi: int) -> int:
        if hi <= lo:
            return 0
        result = int(self._lib.primesieve_count_primes(lo, hi - 1))
        if result == _ERROR:
            raise RuntimeError(f"libprimesieve failed to count [{lo}, {hi})")
        return result


def backend_name(name: BackendName = "auto") -> str:
    """What :func:`select_backend` would choose, without loading numpy (the agent's main
    process reports it; its sieve workers do the loading)."""
    if name in ("auto", "primesieve") and PrimesieveBackend.load() is not None:
        return "primesieve"
    if name == "primesieve":
        select_backend(name)  # raises the one-line error
    return "numpy"


def select_backend(name: BackendName = "auto") -> SieveBackend:
    """``auto``: libprimesieve when present, else numpy. Asking for a missing one is an error."""
    if name in ("auto", "primesieve"):
        native = PrimesieveBackend.load()
        if native is not None:
            return native
        if name == "primesieve":
            from piswarm.errors import ConfigError

            raise ConfigError(
                "sieve backend 'primesieve' asked for, but libprimesieve is not installed "
                "(sudo apt-get install libprimesieve11)"
            )
    return NumpyBackend()
