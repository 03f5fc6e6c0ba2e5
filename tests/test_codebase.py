"""Rules of the codebase that a test can hold: lint, types, and what a Pi must not need."""

import os
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


def test_node_agent_imports_nothing_of_the_head_side():
    code = BLOCK.format(blocked=["pygame", "paramiko", "head", "deploy"]) + (
        "import node_agent.agent, node_agent.sim, node_agent.config, node_agent.sensors,"
        " node_agent.identity, node_agent.runner, node_agent.sieve_backends, piswarm.lock,"
        " piswarm.children, piswarm.protocol, piswarm.protocol.work, piswarm.mqtt\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_the_agents_main_process_leaves_numpy_to_its_sieve_workers():
    """A Pi's agent starts faster and lighter: only the worker processes load numpy."""
    code = (
        "import sys\nimport node_agent.agent, node_agent.cli, node_agent.sim, node_agent.runner\n"
        "from node_agent.sieve_backends import backend_name\nbackend_name('auto')\n"
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
        [sys.executable, "-c", code, "agent", "--node-id", "node-c", "--broker-host",
         "127.0.0.1", "--broker-port", str(broker.port), "--credentials",
         str(users.credentials_path("node-c")), "--lock-dir", str(tmp_path)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
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
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
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
