"""How piswarm writes a length of time for people: one style everywhere.

``45s``, ``12m``, ``3.5h``, ``2d``: the CLI's job lines, ``piswarm status``, the
kiosk's "time left" and "seen ... ago" all use it, so a student reading one next to
another reads the same units.
"""


def duration(seconds: float | None) -> str:
    """``-`` for unknown; whole seconds under 2 minutes, minutes under 2 hours, hours
    (one decimal) under 2 days, then days."""
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.0f}d"


def ago(seconds: float) -> str:
    """How long ago: ``5s ago``, ``3m ago``."""
    return f"{duration(seconds)} ago"
