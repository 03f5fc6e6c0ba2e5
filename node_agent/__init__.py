"""What runs on every Pi: the agent (:mod:`node_agent.agent`), its sensors
(:mod:`node_agent.sensors`), configuration and pidfile lock, and the simulated fleet
(:mod:`node_agent.sim`). Needs only paho-mqtt, psutil and numpy; never imports
``head``, ``deploy`` or pygame (tests/test_codebase.py holds this)."""
