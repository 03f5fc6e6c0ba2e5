"""Errors of the broker side.

PiswarmError
└── BrokerError              mosquitto could not be set up or started
    ├── MosquittoNotFound    no mosquitto binary: says how to install it
    └── UserStoreError       the credentials directory is missing or inconsistent
"""

from piswarm.errors import PiswarmError


class BrokerError(PiswarmError):
    """The broker could not be configured or started."""


class MosquittoNotFound(BrokerError):
    """No ``mosquitto`` binary on this machine."""

    def __init__(self) -> None:
        super().__init__(
            "mosquitto is not installed: run 'sudo apt-get install mosquitto mosquitto-clients' "
            "(Debian, Ubuntu, Raspberry Pi OS) or set PISWARM_MOSQUITTO to its path"
        )


class UserStoreError(BrokerError):
    """The broker's users directory cannot be used as asked."""
