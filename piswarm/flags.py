"""Value types for command-line flags: each checks its range as the flag is read.

argparse reports a bad value as ``piswarm CMD: error: argument --flag: MESSAGE``: one line
that names the flag; the message here says what was given and what is allowed, with large
numbers written short (``1e30``, ``9.22e18``), never as 31 digits.
"""

import argparse
import math
import re
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path

_NUMBER = re.compile(r"[0-9][0-9_]*(\.[0-9]+)?(e[0-9]+)?", re.IGNORECASE)
_SHORT_BELOW = 10**9


def readable(value: float | Decimal) -> str:
    """A number as people read it: ``10,000``, ``0.05``, ``1e8``, ``9.22e18``."""
    if isinstance(value, int) and abs(value) < _SHORT_BELOW:
        return f"{value:,}"
    approx = float(value)
    if not isinstance(value, int) and (approx == 0 or 1e-3 <= abs(approx) < _SHORT_BELOW):
        return f"{approx:,.6g}"
    mantissa, _, exponent = f"{value:.3g}".partition("e")
    if "." in mantissa:  # Decimal keeps the zeros of its digits: 1.00e+30
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}" if exponent else mantissa


def span(lo: float, hi: float) -> str:
    """``lo-hi`` as :func:`readable` writes them."""
    return f"{readable(lo)}-{readable(hi)}"


def _within(value: float | Decimal, text: str, lo: float, hi: float, unit: str) -> None:
    if not lo <= value <= hi:
        raise argparse.ArgumentTypeError(
            f"{readable(value) if len(text) > 12 else text} is not in {span(lo, hi)}{unit}"
        )


def whole(lo: int, hi: int, *, unit: str = "") -> Callable[[str], int]:
    """A whole number in ``[lo, hi]``, also written ``1e9``, ``2.5e9`` or ``1_000_000``."""

    def parse(text: str) -> int:
        value = _decimal(text)
        _within(value, text.strip(), lo, hi, unit)  # before int(): 1e999999999 is a number
        return int(value)

    parse.__name__ = "whole number"  # argparse's fallback message names the type
    return parse


def real(lo: float, hi: float, *, unit: str = "") -> Callable[[str], float]:
    """A finite number in ``[lo, hi]``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
        _within(value, text.strip(), lo, hi, unit)
        return value

    parse.__name__ = "number"
    return parse


def _decimal(text: str) -> Decimal:
    """A non-negative whole number, also as ``1e9``, ``2.5e9`` or ``1_000_000``."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text[:20]!r} is not a non-negative whole number (e.g. 1000000, 1_000_000 or 1e6)"
        )
    try:
        value = Decimal(text.replace("_", ""))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a number") from None
    if value != value.to_integral_value():
        raise argparse.ArgumentTypeError(f"{text[:20]!r} is not a whole number")
    return value


def text(max_len: int) -> Callable[[str], str]:
    """Text of at most ``max_len`` characters."""

    def parse(value: str) -> str:
        if len(value) > max_len:
            raise argparse.ArgumentTypeError(
                f"{value[:20]!r}... is {len(value)} characters long; at most {max_len}"
            )
        return value

    parse.__name__ = "text"
    return parse


def directory(text: str) -> Path:
    """An existing directory (nothing is created behind the user's back)."""
    path = Path(text).expanduser()
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    return path


def new_file(text: str) -> Path:
    """A file to write, in a directory that exists."""
    path = Path(text).expanduser()
    if not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: no such directory {path.parent}")
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a directory; name a file in it")
    return path


def add_broker_flags(parser: argparse.ArgumentParser) -> None:
    """``--broker-host`` / ``--broker-port``: where the broker is (no password flag, ever)."""
    parser.add_argument("--broker-host", metavar="HOST", help="broker host (default localhost)")
    parser.add_argument(
        "--broker-port", metavar="PORT", type=whole(1, 65535), help="broker port (1883)"
    )
