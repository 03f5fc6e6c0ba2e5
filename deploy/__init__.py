"""Fleet deployment over SSH (paramiko): runs on the operator's laptop.

``inventory`` reads the lab's pi_list.txt; ``push`` puts the agent on every Pi (code,
wheels, venv, config, credentials, start) and confirms over MQTT; ``ssh`` and ``trust``
hold one session and the known host keys; ``remote_helper`` is what runs on a Pi;
``cli`` is ``piswarm deploy``.
"""
