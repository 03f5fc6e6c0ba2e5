"""Fleet deployment over SSH (paramiko): runs on the operator's laptop.

Available: the inventory (``deploy/inventory.py``, ``piswarm deploy inventory``). The
rest of ``piswarm deploy`` (push, status, stop, ..., with host-key checking and
confirmation over MQTT) says it is not yet available and exits with code 2; it arrives
with the rest of the fleet deployment issue.
"""
