"""The kiosk as the commands build it: the cluster, primes, Life and experiment scenes
over one model."""

import os
from typing import Any

from head.config import DisplayOptions


def build_app(options: DisplayOptions, source: Any, expected: list[str] | None = None) -> Any:
    """The display app (imports pygame: only called to show a display)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    from head.display.app import DisplayApp
    from head.display.cluster import ClusterModel
    from head.display.cluster_scene import ClusterScene
    from head.display.experiment_scene import ExperimentScene
    from head.display.layout import Layout
    from head.display.life_scene import LifeScene
    from head.display.primes_scene import PrimesScene

    layout = Layout.load(options.layout) if options.layout else None
    seated = layout if layout is not None and layout.seats else None  # a file may only group
    scene = ClusterScene(
        layout=seated,
        rows=options.rows,
        columns=options.columns,
        groups=layout.groups if layout else (),
    )
    seats = layout.expected if layout else []
    model = ClusterModel(expected=seats or expected or [])
    return DisplayApp(
        model=model,
        source=source,
        scenes=[scene, PrimesScene(), LifeScene(), ExperimentScene()],
        options=options,
    )
