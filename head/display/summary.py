"""A text view of the cluster: the demo's live summary and ``piswarm status``."""

import time
from collections.abc import Callable

from head.display.cluster import ClusterModel, NodeState, NodeView
from piswarm.durations import ago
from piswarm.protocol.health import HEALTH_EVERY_S, Health


def _temp(view: NodeView) -> str:
    return "   -  " if view.temp_c is None else f"{view.temp_c:5.1f}C"


def headline(model: ClusterModel, now: float) -> str:
    s = model.summary(now)
    hottest = f"{s.hottest[0]} {s.hottest[1]:.1f}C" if s.hottest else "-"
    average = f"{s.average_temp:.1f}C" if s.average_temp is not None else "-"
    return (
        f"nodes online {s.live + s.stale}/{s.total} (stale {s.stale}, offline {s.offline}"
        f"{f', never seen {s.never}' if s.never else ''}) | hottest {hottest} | "
        f"average {average} | throttled {s.throttled}"
    )


def render(model: ClusterModel, now: float, *, hottest: int = 5) -> str:
    """Headline plus the hottest nodes and every node that is not live."""
    lines = [headline(model, now)]
    live = [v for v in model.nodes() if v.state(now) is NodeState.LIVE and v.temp_c is not None]
    live.sort(key=lambda v: v.temp_c or 0.0, reverse=True)
    if live:
        lines.append(
            "hottest: " + ", ".join(f"{v.node_id} {_temp(v).strip()}" for v in live[:hottest])
        )
    for view in model.nodes():
        state = view.state(now)
        if state in (NodeState.STALE, NodeState.OFFLINE):
            seen = "never" if view.last_seen is None else ago(now - view.last_seen)
            lines.append(f"  {view.node_id:<20} {state.value:<8} last seen {seen}")
    if model.stats.malformed:
        lines.append(f"malformed messages ignored: {model.stats.malformed}")
    return "\n".join(lines)


def table(model: ClusterModel, now: float) -> str:
    """One line per node, for ``piswarm status``."""
    rows = [f"{'NODE':<20} {'STATE':<8} {'TEMP':>6} {'CPU':>5} {'LOAD':>5}  VERSION  HOST/IP"]
    for v in model.nodes():
        t, b = v.telemetry, v.birth
        cpu = f"{t.cpu_percent:.0f}%" if t else "-"
        load = f"{t.load[0]:.2f}" if t else "-"
        where = (b.ip or b.host) if b else "-"
        rows.append(
            f"{v.node_id:<20} {v.state(now).value:<8} {_temp(v):>6} {cpu:>5} {load:>5}  "
            f"{(b.version if b else '-'):<8} {where}{'  THROTTLED' if v.throttled else ''}"
        )
    rows.append(headline(model, now))
    return "\n".join(rows)


def live_printer(tty: bool, write: Callable[[str], object]) -> Callable[[str], None]:
    """Redraw in place on a terminal; append a timestamped block otherwise."""

    def show(text: str) -> None:
        if tty:
            write("\x1b[H\x1b[2J" + text + "\n")
        else:
            write(time.strftime("%H:%M:%S ") + text + "\n")

    return show


def health_table(found: list[Health], now: float) -> str:
    """One line per process, coordinator first, for ``piswarm status --health``. One that
    has not reported for two of its periods is marked silent (stopped, or cut off)."""
    rows = [
        f"{'PROCESS':<12} {'NAME':<20} {'MALFORMED':>10} {'REFUSED':>10} {'DROPPED':>10} "
        f"{'ERRORS':>8}  REPORTED   STARTED"
    ]
    order = sorted(found, key=lambda h: (h.process != "coordinator", h.name))
    for h in order:
        silent = "  (silent)" if now - h.ts > 2 * HEALTH_EVERY_S else ""
        rows.append(
            f"{h.process:<12} {h.name:<20} {h.malformed:>10,} {h.refused:>10,} "
            f"{h.dropped:>10,} {h.errors:>8,}  {ago(now - h.ts):<10} "
            f"{ago(now - h.started)}{silent}"
        )
    if not found:
        rows.append("(no process has reported: is 'piswarm head' running?)")
    return "\n".join(rows)
