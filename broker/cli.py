"""``piswarm broker users ...``, ``piswarm broker run`` and ``piswarm broker config``."""

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from piswarm.flags import whole
from piswarm.fleet import MAX_SIM_NODES, sim_node_ids
from piswarm.signals import stop_on_signals


def _users_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir",
        dest="users_dir",
        type=Path,
        help="users directory (default $PISWARM_BROKER_DIR or ~/.config/piswarm/broker)",
    )
    parser.add_argument(
        "--broker-group",
        metavar="GROUP",
        help="make passwd and acl readable by this group (the system broker: 'mosquitto')",
    )


def _bridge_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bridge-to",
        metavar="HOST[:PORT]",
        help="a lab's broker: bridge this broker to the head node's (docs/scale.md)",
    )
    parser.add_argument(
        "--bridge-credentials",
        type=Path,
        metavar="FILE",
        help="with --bridge-to: the lab's bridge login, made on the head by "
        "'piswarm broker users bridge NAME'",
    )


def _bridge(args: argparse.Namespace) -> Any:
    """The bridge the flags ask for, or None; a one-line error for a bad flag."""
    from broker.config import Bridge
    from piswarm.errors import ConfigError
    from piswarm.mqtt import Credentials

    if args.bridge_to is None:
        if args.bridge_credentials is not None:
            raise ConfigError("--bridge-credentials: only with --bridge-to HOST")
        return None
    host, colon, port_text = args.bridge_to.rpartition(":")
    if not colon:
        host, port_text = args.bridge_to, "1883"
    if not host or not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigError(f"--bridge-to {args.bridge_to!r}: give HOST or HOST:PORT")
    if args.bridge_credentials is None:
        raise ConfigError(
            "--bridge-to needs --bridge-credentials FILE (on the head: "
            "'piswarm broker users bridge NAME')"
        )
    creds = Credentials.load(args.bridge_credentials)
    return Bridge(host=host, port=int(port_text), username=creds.username, password=creds.password)


def register(sub: Any) -> None:
    broker = sub.add_parser("broker", help="the Mosquitto broker: users, config, run")
    bsub = broker.add_subparsers(dest="broker_command", metavar="ACTION", required=True)

    users = bsub.add_parser("users", help="create and list broker credentials")
    usub = users.add_subparsers(dest="users_command", metavar="ACTION", required=True)
    init = usub.add_parser("init", help="create the admin and viewer users")
    _users_dir_flag(init)
    add = usub.add_parser("add", help="create node users (one per node id)")
    add.add_argument("node_ids", nargs="*", metavar="NODE_ID")
    add.add_argument(
        "--count", type=whole(1, MAX_SIM_NODES), help="also create PREFIX-001 ... PREFIX-COUNT"
    )
    add.add_argument("--prefix", default="sim", help="prefix for --count (default 'sim')")
    add.add_argument("--rotate", action="store_true", help="new passwords for existing users")
    _users_dir_flag(add)
    remove = usub.add_parser("remove", help="delete users")
    remove.add_argument("names", nargs="+", metavar="NAME")
    _users_dir_flag(remove)
    listing = usub.add_parser("list", help="list users and roles (never passwords)")
    _users_dir_flag(listing)
    bridge = usub.add_parser(
        "bridge", help="create the login a lab's broker bridges to this (the head's) broker with"
    )
    bridge.add_argument("name", metavar="NAME", help="the lab's bridge user, e.g. lab-a")
    bridge.add_argument("--rotate", action="store_true", help="a new password")
    _users_dir_flag(bridge)
    for parser in (init, add, remove, listing, bridge):
        parser.set_defaults(handler=run_users)

    run = bsub.add_parser("run", help="run mosquitto with the piswarm config in the foreground")
    run.add_argument(
        "--port", type=whole(0, 65535), default=1883, help="port (default 1883; 0 = a free one)"
    )
    run.add_argument("--bind", default="0.0.0.0", help="address to listen on (default all)")  # noqa: S104
    run.add_argument("--state-dir", type=Path, help="config, persistence and log directory")
    _users_dir_flag(run)
    _bridge_flags(run)
    run.set_defaults(handler=run_broker)

    config = bsub.add_parser(
        "config", help="print the piswarm broker config (a drop-in for /etc/mosquitto/conf.d)"
    )
    config.add_argument("--port", type=whole(1, 65535), default=1883)
    config.add_argument(
        "--standalone",
        action="store_true",
        help="a complete mosquitto.conf (with persistence_location and log_dest) "
        "instead of a drop-in beside Debian's packaged one",
    )
    config.add_argument("--state-dir", type=Path, default=Path("/var/lib/mosquitto"))
    config.add_argument("--log-file", type=Path, default=Path("/var/log/mosquitto/mosquitto.log"))
    _users_dir_flag(config)
    _bridge_flags(config)
    config.set_defaults(handler=print_config)


def _store(args: argparse.Namespace) -> Any:
    import grp

    from broker.users import UserStore
    from piswarm import paths
    from piswarm.errors import ConfigError

    gid = None
    if getattr(args, "broker_group", None):
        try:
            gid = grp.getgrnam(args.broker_group).gr_gid
        except KeyError:
            raise ConfigError(f"--broker-group {args.broker_group}: no such group") from None
    return UserStore(args.users_dir or paths.broker_users_dir(), broker_group=gid)


def run_users(args: argparse.Namespace) -> int:
    from piswarm.errors import ConfigError
    from piswarm.protocol import ProtocolError, topics

    store = _store(args)
    if args.users_command == "init":
        created = store.init()
        print(
            f"{len(created)} users created in {store.root}"
            + "".join(f"\n  {u.name} ({u.role}): {store.credentials_path(u.name)}" for u in created)
        )
    elif args.users_command == "add":
        try:
            ids = [topics.validate_node_id(node_id) for node_id in args.node_ids]
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        if args.count is not None:
            try:
                ids += sim_node_ids(args.count, args.prefix)
            except ProtocolError as exc:
                raise ConfigError(f"--prefix {args.prefix!r}: {exc}") from None
        if not ids:
            raise ConfigError("name at least one NODE_ID, or use --count")
        changed = store.add_nodes(ids, rotate=args.rotate)
        print(
            f"{len(changed)} node users {'written' if args.rotate else 'created'}, "
            f"{len(ids) - len(changed)} already existed; credentials in "
            f"{store.root / 'credentials'} (reload a running broker: kill -HUP <pid>)"
        )
    elif args.users_command == "remove":
        store.remove(args.names)
        print(f"removed {len(args.names)} users (reload a running broker: kill -HUP <pid>)")
    elif args.users_command == "bridge":
        user = store.add_bridge(args.name, rotate=args.rotate)
        print(
            f"bridge user {user.name}: {store.credentials_path(user.name)} (copy it to the lab's "
            "broker for --bridge-credentials; reload this broker: kill -HUP <pid>)"
        )
    else:
        users = store.users()
        for user in users:
            print(f"{user.name:<24} {user.role:<7} {store.credentials_path(user.name)}")
        print(f"{len(users)} users in {store.root}", file=sys.stderr)
    return 0


def run_broker(args: argparse.Namespace) -> int:
    from broker.errors import BrokerError
    from broker.runner import BrokerProcess, find_mosquitto
    from piswarm import paths

    find_mosquitto()  # before touching anything on disk
    bridge = _bridge(args)
    store = _store(args)
    created = store.init()
    state_dir = args.state_dir or paths.state_home() / "broker"
    broker = BrokerProcess(
        users=store,
        state_dir=state_dir,
        port=args.port or None,
        bind=args.bind,
        die_with_parent=True,
        bridge=bridge,
    )
    stop = stop_on_signals()
    # SIGHUP reloads users: 'piswarm broker users add' then 'kill -HUP <this pid>'.
    signal.signal(signal.SIGHUP, lambda _s, _f: broker.reload())
    broker.start()
    if created:
        print(f"created admin and viewer users in {store.root}/credentials")
    print(
        f"broker listening on {args.bind}:{broker.port} (mosquitto pid {broker.pid}); "
        f"state in {state_dir}, log {broker.log_path}; Ctrl-C stops it"
        + (f"; bridged to {bridge.host}:{bridge.port} as {bridge.username}" if bridge else ""),
        flush=True,
    )
    try:
        while not stop.wait(0.5):
            if not broker.running:
                raise BrokerError(f"mosquitto exited: {broker.tail_log() or 'see its log'}")
    finally:
        broker.stop()
    return 0


def print_config(args: argparse.Namespace) -> int:
    from broker.config import BrokerConfig

    bridge = _bridge(args)
    store = _store(args)
    config = BrokerConfig(
        port=args.port,
        bind=None,
        passwd_file=store.passwd_path,
        acl_file=store.acl_path,
        persistence_dir=args.state_dir,
        log_file=args.log_file,
        drop_in=not args.standalone,
        bridge=bridge,
    )
    sys.stdout.write(config.render())
    return 0
