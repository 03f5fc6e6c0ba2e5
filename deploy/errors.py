"""Errors of deployment, each about one host and said in one line.

PiswarmError
└── DeployError            one host could not be deployed (``host``, ``reason``)
    ├── NetworkError       unreachable, refused, timed out: retried with backoff
    ├── AuthError          no key or password the host accepts: never retried
    ├── HostKeyUnknown     first contact without --accept-new: never retried
    ├── HostKeyChanged     the host's key differs from known_hosts: never retried
    └── RemoteError        a step on the host failed (its own message)
"""

from piswarm.errors import PiswarmError


class DeployError(PiswarmError):
    retryable = False

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


class NetworkError(DeployError):
    retryable = True


class AuthError(DeployError):
    pass


class HostKeyUnknown(DeployError):
    pass


class HostKeyChanged(DeployError):
    pass


class RemoteError(DeployError):
    pass
