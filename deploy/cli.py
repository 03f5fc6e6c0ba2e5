"""``piswarm deploy``: inventory, push, and status/stop/start/restart/logs/uninstall/forget.

Exit codes of the fleet verbs: 0 every host fine, 4 some hosts failed, 5 every host
failed; 2 for bad arguments or configuration (nothing was touched).
"""

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from piswarm.flags import real, whole
from piswarm.fleet import MAX_WORKERS

FLEET_VERBS = {
    "status": "is the agent running, and which build",
    "stop": "stop the agent (its pidfile or systemd unit: nothing else)",
    "start": "start the agent",
    "restart": "stop, then start the agent",
    "logs": "the last lines of each agent's log (--lines)",
    "uninstall": "stop the agent and remove ~/.piswarm",
}


def register(sub: Any) -> None:

    deploy = sub.add_parser("deploy", help="the fleet's inventory (push and the rest to come)")
    verbs = deploy.add_subparsers(dest="verb", metavar="VERB", parser_class=type(deploy))
    verbs.required = True
    inventory = verbs.add_parser(
        "inventory", help="check a pi_list.txt, or write one from ranges (--range)"
    )
    inventory.add_argument(
        "file", nargs="?", type=Path, help="an inventory to check (default: pi_list.txt)"
    )
    inventory.add_argument(
        "--range",
        action="append",
        default=[],
        metavar="PATTERN",
        help="write an inventory for these addresses, e.g. '192.168.[4:67].[1:3]' (repeatable)",
    )
    inventory.add_argument("--user", help="log in as this user (written into each line)")
    inventory.add_argument("--port", type=whole(1, 65535), default=22, help="SSH port (default 22)")
    inventory.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    inventory.add_argument(
        "--ids",
        action="store_true",
        help="print the node ids, one per line (for 'broker users add')",
    )
    inventory.set_defaults(handler=run_inventory)
    push = verbs.add_parser("push", help="deploy the agent to every host of the inventory")
    _fleet_flags(push)
    push.add_argument(
        "--broker-host",
        required=True,
        metavar="HOST",
        help="the broker's address as the Pis reach it",
    )
    push.add_argument("--broker-port", type=whole(1, 65535), default=1883, metavar="PORT")
    push.add_argument(
        "--workers",
        type=whole(0, MAX_WORKERS),
        metavar="N",
        help="sieve workers per Pi (default: the agent's own, cores - 1)",
    )
    push.add_argument(
        "--online",
        action="store_true",
        help="let the Pis install dependencies from their own index (default: wheels from here)",
    )
    push.add_argument(
        "--extra-index-url",
        metavar="URL",
        help="another index for the wheels, e.g. https://www.piwheels.org/simple",
    )
    push.add_argument(
        "--wait",
        type=real(0, 3600, unit=" s"),
        default=30.0,
        metavar="S",
        help="seconds to wait for the agents' 'online' (0: no wait)",
    )
    push.add_argument(
        "--users-dir",
        type=Path,
        help="broker users (default $PISWARM_BROKER_DIR or ~/.config/piswarm/broker)",
    )
    push.set_defaults(handler=run_push)
    for verb, help_text in FLEET_VERBS.items():
        parser = verbs.add_parser(verb, help=help_text)
        _fleet_flags(parser)
        if verb == "logs":
            parser.add_argument(
                "--lines", type=whole(1, 100_000), default=30, help="lines per host"
            )
        parser.set_defaults(handler=run_fleet_verb, action=verb)
    forget = verbs.add_parser("forget", help="forget a host's recorded key (after a reinstall)")
    forget.add_argument("host", help="as the error named it: HOST or [HOST]:PORT")
    forget.add_argument("--known-hosts", type=Path, default=DEFAULT_KNOWN_HOSTS)
    forget.set_defaults(handler=run_forget)
    broker = verbs.add_parser(
        "broker", help="install Mosquitto on the head node with piswarm's config and users"
    )
    broker.add_argument("host", help="[user@]host[:port] of the head node (root or sudo -n)")
    broker.add_argument("--identity", "-i", type=Path, help="SSH private key")
    broker.add_argument("--password-env", metavar="VAR", help="SSH password from this variable")
    broker.add_argument("--ask-password", action="store_true", help="prompt for it once")
    broker.add_argument("--known-hosts", type=Path, default=DEFAULT_KNOWN_HOSTS)
    broker.add_argument("--accept-new", action="store_true", help="record a first-seen key")
    broker.add_argument(
        "--timeout", type=real(0.1, 600, unit=" s"), default=10.0, help="connect timeout (s)"
    )
    broker.add_argument(
        "--port", type=whole(1, 65535), default=1883, help="MQTT port (default 1883)"
    )
    broker.add_argument(
        "--users-dir",
        type=Path,
        help="broker users (default $PISWARM_BROKER_DIR or ~/.config/piswarm/broker)",
    )
    broker.set_defaults(handler=run_broker, user="pi", parallel=1)


DEFAULT_KNOWN_HOSTS = Path("~/.ssh/known_hosts").expanduser()


def _fleet_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inventory",
        nargs="?",
        type=Path,
        default=Path("pi_list.txt"),
        help="the hosts (default pi_list.txt)",
    )
    parser.add_argument("--user", default="pi", help="SSH user where a line names none")
    parser.add_argument("--identity", "-i", type=Path, help="SSH private key")
    parser.add_argument(
        "--password-env", metavar="VAR", help="take the SSH password from this environment variable"
    )
    parser.add_argument("--ask-password", action="store_true", help="prompt for it once")
    parser.add_argument("--known-hosts", type=Path, default=DEFAULT_KNOWN_HOSTS)
    parser.add_argument(
        "--accept-new",
        action="store_true",
        help="record keys of hosts seen for the first time (logged)",
    )
    parser.add_argument(
        "--parallel", type=whole(1, 256), default=16, help="hosts at once (default 16)"
    )
    parser.add_argument(
        "--timeout", type=real(0.1, 600, unit=" s"), default=10.0, help="connect timeout (s)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON document on stdout")
    parser.add_argument(
        "--failed-file", type=Path, help="failed hosts, as an inventory (default INVENTORY.failed)"
    )


def _load_hosts(path: Path) -> Any:
    from deploy.inventory import parse_inventory
    from piswarm.errors import ConfigError

    try:
        inventory = parse_inventory(path.read_text())
    except OSError as exc:
        raise ConfigError(f"cannot read the inventory {path}: {exc.strerror}") from None
    if inventory.problems:
        count = len(inventory.problems)
        raise ConfigError(
            f"{path}: {inventory.problems[0]} ({count} problems: see "
            f"'piswarm deploy inventory {path}')"
        )
    if not inventory.hosts:
        raise ConfigError(f"{path} lists no hosts")
    return inventory.hosts


def _ssh_options(args: argparse.Namespace) -> Any:
    import getpass

    import paramiko

    from deploy.ssh import SshOptions
    from piswarm.errors import ConfigError

    password = None
    if args.password_env:
        password = os.environ.get(args.password_env)
        if not password:
            raise ConfigError(f"--password-env: ${args.password_env} is not set")
    elif args.ask_password:
        password = getpass.getpass("SSH password for the fleet: ")
    config = None
    config_path = Path("~/.ssh/config").expanduser()
    if config_path.is_file():
        config = paramiko.SSHConfig.from_path(str(config_path))
    return SshOptions(
        user=args.user,
        identity=args.identity,
        password=password,
        connect_timeout=args.timeout,
        ssh_config=config,
    )


def _report(args: argparse.Namespace, rows: list[dict[str, Any]], code: int) -> int:
    import json

    from deploy.inventory import render_inventory

    failed = [r for r in rows if r["outcome"] in ("failed", "not-online")]
    if failed:
        path = args.failed_file or args.inventory.with_name(args.inventory.name + ".failed")
        hosts = [r["_host"] for r in failed]
        path.write_text(
            render_inventory(
                hosts,
                header="failed hosts of the last deploy: fix them, then run again with this file",
            )
        )
        print(f"{len(failed)} failed hosts written to {path}", file=sys.stderr)
    for row in rows:
        del row["_host"]
    if args.json:
        print(json.dumps({"exit_code": code, "hosts": rows}, indent=1))
        return code
    width = max([len(r["host"]) for r in rows] + [4])
    for r in rows:
        print(f"{r['host']:<{width}}  {r['node']:<14} {r['outcome']:<11} {r['detail']}")
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    print(", ".join(f"{n} {o}" for o, n in sorted(counts.items())) + f" of {len(rows)} hosts")
    return code


class _Progress:
    """A one-line progress bar on stderr (only on a terminal)."""

    def __init__(self, total: int) -> None:
        import threading

        self.total, self.done, self.failed = total, 0, 0
        self.lock = threading.Lock()
        self.live = sys.stderr.isatty()

    def __call__(self, result: Any) -> None:
        with self.lock:
            self.done += 1
            self.failed += result.outcome == "failed"
            if self.live:
                bar = "#" * (30 * self.done // self.total)
                sys.stderr.write(f"\r[{bar:<30}] {self.done}/{self.total} ({self.failed} failed)")
                if self.done == self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


def run_push(args: argparse.Namespace) -> int:
    from broker.users import VIEWER_USER, UserStore
    from deploy.bundle import make_bundle
    from deploy.confirm import StatusWatcher
    from deploy.push import AgentSettings, Pusher, confirm, exit_code, expected_version
    from deploy.trust import KnownHosts
    from piswarm import paths
    from piswarm.errors import ConfigError
    from piswarm.mqtt import BrokerSettings, Credentials

    hosts = _load_hosts(args.inventory)
    options = _ssh_options(args)
    users = UserStore(args.users_dir or paths.broker_users_dir())
    missing = [h.node_id for h in hosts if not users.credentials_path(h.node_id).exists()]
    if missing:
        raise ConfigError(
            f"{len(missing)} nodes have no broker user (first: {missing[0]}): run "
            f"'piswarm broker users add {' '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}' on the head node and reload the broker"
        )
    bundle = make_bundle()
    index = ("--extra-index-url", args.extra_index_url) if args.extra_index_url else ()
    pusher = Pusher(
        options=options,
        known=KnownHosts(args.known_hosts, accept_new=args.accept_new),
        bundle=bundle,
        agent=AgentSettings(
            broker_host=args.broker_host, broker_port=args.broker_port, workers=args.workers
        ),
        credentials=lambda node: users.credentials_path(node).read_text(),
        wheel_cache=paths.cache_home() / "wheelhouse",
        offline=not args.online,
        index_args=index,
        parallel=args.parallel,
    )
    viewer = Credentials.load(users.credentials_path(VIEWER_USER))
    watch = BrokerSettings(host=args.broker_host, port=args.broker_port, credentials=viewer)
    with StatusWatcher(watch, [h.node_id for h in hosts]) as watcher:
        results = pusher.push(hosts, _Progress(len(hosts)))
        expected = {
            r.host.node_id: expected_version(bundle) for r in results if r.outcome != "failed"
        }
        if args.wait > 0 and expected:
            confirm(results, watcher.wait_for(expected, args.wait))
    rows = [{**r.as_json(), "_host": r.host} for r in results]
    return _report(args, rows, exit_code(results))


def run_fleet_verb(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from deploy.errors import DeployError
    from deploy.ssh import Session
    from deploy.trust import KnownHosts

    hosts = _load_hosts(args.inventory)
    options = _ssh_options(args)
    known = KnownHosts(args.known_hosts, accept_new=args.accept_new)

    def one(host: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"host": host.target, "node": host.node_id, "_host": host}
        try:
            with Session(host, options, known) as s:
                if args.action == "restart":
                    s.helper("stop")
                    answer = s.helper("start")
                else:
                    extra = {"lines": args.lines} if args.action == "logs" else {}
                    answer = s.helper(args.action, extra)
        except DeployError as exc:
            return {**row, "outcome": "failed", "detail": exc.reason}
        answer.pop("ok", None)
        lines = answer.pop("lines", None)
        if lines is not None:
            row["lines"] = lines
        detail = ", ".join(f"{k} {v}" for k, v in answer.items())
        return {**row, "outcome": "ok", "detail": detail}

    with ThreadPoolExecutor(max_workers=min(args.parallel, len(hosts))) as pool:
        rows = list(pool.map(one, hosts))
    bad = sum(1 for r in rows if r["outcome"] == "failed")
    code = 5 if bad == len(rows) else 4 if bad else 0
    if args.action == "logs" and not args.json:
        for r in rows:
            for line in r.get("lines", []):
                print(f"{r['node']}: {line}")
    return _report(args, rows, code)


def run_broker(args: argparse.Namespace) -> int:

    from broker.config import BrokerConfig
    from broker.users import ADMIN_USER, UserStore
    from deploy.errors import DeployError
    from deploy.inventory import InventoryError, parse_line
    from deploy.ssh import Session
    from deploy.trust import KnownHosts
    from piswarm import paths
    from piswarm.client import MqttClient, MqttError
    from piswarm.errors import ConfigError, PiswarmError
    from piswarm.mqtt import BrokerSettings, Credentials

    try:
        (host,) = parse_line(args.host)
    except (InventoryError, ValueError) as exc:
        raise ConfigError(f"{args.host!r}: {exc}") from None
    users = UserStore(args.users_dir or paths.broker_users_dir())
    if not users.credentials_path(ADMIN_USER).exists():
        raise ConfigError(f"no broker users in {users.root}: run 'piswarm broker users init'")
    folder = Path("/etc/piswarm/broker")
    config = BrokerConfig(
        port=args.port,
        bind=None,
        passwd_file=folder / "passwd",
        acl_file=folder / "acl",
        persistence_dir=Path("/var/lib/mosquitto"),
        drop_in=True,
    )
    listed = users.users()
    known = KnownHosts(args.known_hosts, accept_new=args.accept_new)
    try:
        with Session(host, _ssh_options(args), known) as s:
            # The users directory's own files: the same users give the same bytes (hashes
            # are salted afresh only when users change), so a rerun changes nothing.
            answer = s.helper(
                "broker",
                {
                    "passwd": users.passwd_path.read_text(),
                    "acl": users.acl_path.read_text(),
                    "config": config.render(),
                    "port": args.port,
                },
                as_root=True,
            )
    except DeployError as exc:
        raise PiswarmError(exc.reason) from None
    # The proof: log in as the admin over MQTT.
    admin = Credentials.load(users.credentials_path(ADMIN_USER))
    check = MqttClient(
        BrokerSettings(host=host.address, port=args.port, credentials=admin),
        role="deploy-check",
    )
    try:
        check.connect(10.0)
    except MqttError as exc:
        raise PiswarmError(
            f"Mosquitto on {host.address}:{args.port} does not accept the admin: {exc}"
        ) from None
    check.stop()
    changed = ", ".join(answer["changed"]) or "nothing changed"
    print(
        f"{host.address}: Mosquitto on port {args.port} with {len(listed)} users ({changed}); "
        "the admin logs in"
    )
    return 0


def run_forget(args: argparse.Namespace) -> int:
    from deploy.trust import KnownHosts

    removed = KnownHosts(args.known_hosts).forget(args.host)
    print(f"{args.host}: {removed} keys forgotten" if removed else f"{args.host}: no key known")
    return 0


def run_inventory(args: argparse.Namespace) -> int:
    from deploy.inventory import InventoryError, parse_inventory, parse_line, render_inventory
    from piswarm.errors import ConfigError

    if args.range:
        if args.file is not None:
            raise ConfigError("give either a FILE to check or --range to write one, not both")
        user = f"{args.user}@" if args.user else ""
        port = f":{args.port}" if args.port != 22 else ""
        text = "\n".join(f"{user}{pattern}{port}" for pattern in args.range)
        try:
            hosts = [h for n, line in enumerate(text.splitlines(), 1) for h in parse_line(line, n)]
        except InventoryError as exc:
            raise ConfigError(f"--range: {exc}") from None
        checked = parse_inventory(render_inventory(hosts))
        if checked.problems:
            raise ConfigError(f"--range: {checked.problems[0]}")
        out = render_inventory(
            hosts,
            header="written by: piswarm deploy inventory --range " + " --range ".join(args.range),
        )
        if args.output is not None:
            args.output.write_text(out)
            print(f"{len(hosts)} hosts written to {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(out)
        return 0
    path = args.file or Path("pi_list.txt")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    inventory = parse_inventory(text)
    if args.ids and not inventory.problems:
        print("\n".join(h.node_id for h in inventory.hosts))
        return 0
    for problem in inventory.problems:
        print(f"{path}: {problem}")
    print(f"{path}: {len(inventory.hosts)} hosts, {len(inventory.problems)} problems")
    return 1 if inventory.problems else 0
