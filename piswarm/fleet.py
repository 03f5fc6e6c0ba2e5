"""The fleet's shape, as every side knows it: how many sieve processes an agent may run,
how many nodes a simulated fleet may hold, and what the simulated nodes are called (the
broker makes their users, the simulator runs them, the demo shows them)."""

from piswarm.protocol import topics

MAX_WORKERS = 256
"""The most sieve processes one agent runs."""
MAX_SIM_NODES = 5000
"""The most nodes one simulated fleet (``piswarm sim``, the demo) holds."""
MAX_ROOM_NODES = 10_000
"""The most nodes the head keeps a row for (the kiosk's model, the Life coordinator's
table): twice the largest room rehearsed. Past it new nodes are counted, not kept."""


def sim_node_ids(count: int, prefix: str = "sim") -> list[str]:
    """``sim-001`` ... ``sim-240``: zero-padded so they sort like the room."""
    width = max(3, len(str(count)))
    return [topics.validate_node_id(f"{prefix}-{i:0{width}d}") for i in range(1, count + 1)]
