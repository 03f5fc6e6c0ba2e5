"""Fleet deployment over SSH (paramiko): runs on the operator's laptop.

Not yet available: ``piswarm deploy`` says so and exits with code 2. It arrives with the
fleet deployment issue (parallel push, host-key checking, confirmation over MQTT).
"""
