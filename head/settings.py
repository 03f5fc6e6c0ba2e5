"""Where the head's commands find the broker and the jobs database: flags first, then
the environment, then the places ``piswarm broker init`` and the head use by default."""

import argparse
import os
from pathlib import Path

from piswarm import paths
from piswarm.mqtt import BrokerSettings


def settings_as(args: argparse.Namespace, user: str) -> BrokerSettings:
    """Broker settings from the flags, logging in with ``--credentials`` or else as
    ``user`` from the broker users directory (when that file exists)."""
    creds = args.credentials
    default = paths.credentials_file(paths.broker_users_dir(), user)
    if creds is None and default.exists():
        creds = default
    return BrokerSettings.from_sources(
        host=args.broker_host, port=args.broker_port, credentials_file=creds
    )


def default_db() -> Path:
    """The jobs database: ``$PISWARM_JOBS_DB``, or ``jobs.sqlite`` in the state directory."""
    explicit = os.environ.get("PISWARM_JOBS_DB")
    return Path(explicit).expanduser() if explicit else paths.state_home() / "jobs.sqlite"
