"""Rules of the codebase that a test can hold: lint, types, and what a Pi must not need."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import status_is

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

# Run inside a child Python: make these imports fail as they would on a bare Pi.
BLOCK = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"{{name}} is not installed on a Pi")
sys.meta_path.insert(0, Block())
"""


def tool(name):
    found = BIN / name
    return str(found) if found.exists() else shutil.which(name)


@pytest.mark.parametrize(
    "argv",
    [["ruff", "check", "."], ["ruff", "format", "--check", "."], ["mypy"]],
    ids=["ruff", "ruff-format", "mypy"],
)
def test_lint_and_types_are_clean(argv):
    exe = tool(argv[0])
    assert exe, f"{argv[0]} is not installed (pip install -e '.[dev]')"
    done = subprocess.run([exe, *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


PACKAGES = ("piswarm", "node_agent", "head", "broker", "deploy", "demo")
ALLOWED = {
    ("node_agent", "piswarm"),  # every side uses the shared package, and nothing else:
    ("head", "piswarm"),
    ("broker", "piswarm"),
    ("deploy", "piswarm"),
    ("deploy", "broker"),  # deploying a Pi makes its broker user
    # The demo is the one package that puts every role in one process (and nothing but
    # the command imports it).
    ("demo", "piswarm"),
    ("demo", "head"),
    ("demo", "node_agent"),
    ("demo", "broker"),
}
COMPOSING = {
    "piswarm/cli.py": {"node_agent", "head", "broker", "deploy", "demo"},  # the one
    # command: each role registers its subcommands (imported when run)
    "deploy/bundle.py": {"node_agent"},  # packs the agent for the Pis
}


def imports_of(path: Path) -> set[str]:
    """The project modules ``path`` imports (anywhere in it: lazy imports too).
    ``from package import module`` names the module, not the package."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            subs = {f"{node.module}.{alias.name}" for alias in node.names}
            modules = {m for m in subs if module_path(m) is not None}
            found.update(modules or {node.module})
    return {m for m in found if m.split(".")[0] in PACKAGES}


def module_path(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SOURCES = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def test_each_package_imports_only_what_it_may_and_every_rule_is_still_needed():
    """node_agent runs on a Pi: it never imports the head, deploy or the broker's code, and
    the head never reaches into node_agent; shared code lives in piswarm. The lists above
    hold both ways: an import they do not allow fails, and so does a rule nothing uses."""
    edges: set[tuple[str, str]] = set()
    used: dict[str, set[str]] = {}
    wrong = []
    for path in SOURCES:
        rel = str(path.relative_to(ROOT))
        own = rel.split("/")[0]
        for target in {m.split(".")[0] for m in imports_of(path)} - {own}:
            if target in COMPOSING.get(rel, set()):
                used.setdefault(rel, set()).add(target)
            elif (own, target) in ALLOWED:
                edges.add((own, target))
            else:
                wrong.append(f"{rel} imports {target}")
    assert not wrong, wrong
    assert edges == ALLOWED, f"allowed but unused: {ALLOWED - edges}"
    assert used == COMPOSING, f"composing files that no longer compose: {COMPOSING}, {used}"


def test_no_module_imports_itself_round_a_cycle():
    graph = {module_name(p): imports_of(p) - {module_name(p)} for p in SOURCES}
    done: set[str] = set()

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            raise AssertionError(" -> ".join([*trail[trail.index(name) :], name]))
        if name in done or name not in graph:
            return
        for target in sorted(graph[name]):
            visit(target, [*trail, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


def test_node_agent_imports_nothing_of_the_head_side():
    code = BLOCK.format(blocked=["pygame", "paramiko", "head", "deploy"]) + (
        "import node_agent.agent, node_agent.sim, node_agent.config, node_agent.sensors,"
        " node_agent.identity, node_agent.runner, piswarm.sieve_backends, piswarm.lock,"
        " piswarm.children, piswarm.protocol, piswarm.protocol.work, piswarm.mqtt\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_agents_main_process_leaves_numpy_to_its_sieve_workers():
    """A Pi's agent starts faster and lighter: only the worker processes load numpy."""
    code = (
        "import sys\nimport node_agent.agent, node_agent.cli, node_agent.sim, node_agent.runner\n"
        "from piswarm.sieve_backends import backend_name\nbackend_name('auto')\n"
        "assert 'numpy' not in sys.modules, 'numpy was imported'\n"
        "from node_agent.runner import compute_block\ncompute_block(1, 100, 'numpy')\n"
        "assert 'numpy' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_agent_runs_without_pygame_or_paramiko(broker, users, recorder, tmp_path):
    rec = recorder()
    code = BLOCK.format(blocked=["pygame", "paramiko"]) + (
        "from piswarm.cli import main\nraise SystemExit(main(sys.argv[1:]))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PISWARM_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "agent",
            "--node-id",
            "node-c",
            "--broker-host",
            "127.0.0.1",
            "--broker-port",
            str(broker.port),
            "--credentials",
            str(users.credentials_path("node-c")),
            "--lock-dir",
            str(tmp_path),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        rec.wait_for(status_is("node-c", "online"), timeout=20)
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out.decode()[-2000:]


BENCHMARKS = sorted(
    p.stem for p in (ROOT / "bench").glob("*.py") if "__main__" in p.read_text()
)  # bench/cluster.py is a helper the end-to-end benchmarks share


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_starts_as_run_bench_starts_it(name):
    """`./run bench NAME` is `python -m bench.NAME` from the top: its imports must resolve."""
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "usage" in done.stdout.lower(), done.stdout[-500:]


def test_the_agent_reads_the_environment_only_where_its_config_is_loaded():
    """Settings come from node_agent/config.py (file < environment < flags): an environment
    switch anywhere else is a setting nobody can find (one was left in the Life round)."""
    readers = [
        path.name
        for path in sorted((ROOT / "node_agent").glob("*.py"))
        if any(word in path.read_text() for word in ("os.environ", "getenv("))
    ]
    assert readers == ["config.py"]


def _strings(path: Path) -> list[str]:
    """Every string constant in ``path``, f-strings' literal parts included."""
    return [
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]


TOPIC = re.compile(r"(?<![\w./~-])piswarm/(?:nodes|jobs|cli|health|#)|/results/")
OUTSIDE_PROTOCOL = [p for p in SOURCES if "protocol" not in p.relative_to(ROOT).parts]


def test_only_the_protocol_package_spells_a_topic():
    """Topics are a public API built and parsed in piswarm/protocol/ alone: a topic typed
    anywhere else drifts from the documented tree (the ACL and the coordinator's routing
    once did). Docstrings may mention topics; code may not spell them."""
    spelled = []
    for path in OUTSIDE_PROTOCOL:
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
            and isinstance(node.body[0].value, ast.Constant)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in docstrings
                and TOPIC.search(node.value)
            ):
                spelled.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value[:60]!r}")
    assert not spelled, spelled


def test_no_module_reaches_into_the_protocols_private_parts():
    private = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in OUTSIDE_PROTOCOL
        for name in imports_of(path)
        if any(part.startswith("_") for part in name.split(".")[2:3])
        and name.startswith("piswarm.protocol.")
    ]
    assert not private, private


def test_every_mqtt_connection_is_the_one_client_type():
    """Seven clients once wired paho by hand, each a little differently; now each is an
    piswarm.client.MqttClient, and only it (and the helpers it is built from) makes one."""
    own = {ROOT / "piswarm" / "client.py", ROOT / "piswarm" / "mqtt.py"}
    hand_made = [
        str(path.relative_to(ROOT))
        for path in SOURCES
        if path not in own
        and any(call in path.read_text() for call in ("mqtt.Client(", "new_client("))
    ]
    assert not hand_made, hand_made
