"""One SSH session against real sshd hosts: what is retried and what never is."""

import shutil
import tempfile
from pathlib import Path

import pytest

from deploy.errors import AuthError, HostKeyChanged, HostKeyUnknown, NetworkError
from deploy.inventory import Host
from deploy.ssh import Session, SshOptions
from deploy.trust import KnownHosts
from tests.deploy import fakepis
from tests.deploy.fakepis import FakePiFleet

pytestmark = pytest.mark.skipif(
    fakepis.available() is not None, reason=f"fake Pis: {fakepis.available()}"
)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = Path(tempfile.mkdtemp(prefix="piswarm-pis-"))
    root.chmod(0o755)  # sshd reads authorized_keys as 'pi'
    key = tmp_path_factory.mktemp("keys") / "id_ed25519"
    with FakePiFleet(root, 2, client_key=key) as pis:
        yield pis
    shutil.rmtree(root, ignore_errors=True)


def session(fleet, address, tmp_path, *, identity=None, accept_new=True, attempts=3):
    slept = []
    known = KnownHosts(tmp_path / "known_hosts", accept_new=accept_new)
    options = SshOptions(
        identity=identity or fleet.client_key, connect_timeout=3, attempts=attempts
    )
    host = Host(address=address, node_id="pi-x")
    return Session(host, options, known, sleep=slept.append), slept


def test_a_session_runs_the_helper_on_the_pi(fleet, tmp_path):
    s, slept = session(fleet, fleet.pis[0].address, tmp_path)
    with s:
        answer = s.helper("probe")
    assert answer["ok"] and answer["build"] is None and answer["running"] is None
    assert slept == []


def test_network_errors_are_retried_with_backoff(fleet, tmp_path):
    s, slept = session(fleet, fleet.unreachable_address, tmp_path)
    with pytest.raises(NetworkError, match="no route to host"), s:
        pass
    assert slept == [0.5, 1.0]  # three attempts, waiting longer each time


def test_a_refused_key_is_never_retried(fleet, tmp_path):
    stranger = tmp_path / "stranger"
    fakepis.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger))
    s, slept = session(fleet, fleet.pis[0].address, tmp_path, identity=stranger)
    with pytest.raises(AuthError, match="authentication failed as pi"), s:
        pass
    assert slept == []


def test_host_key_problems_are_never_retried(fleet, tmp_path):
    s, slept = session(fleet, fleet.pis[1].address, tmp_path, accept_new=False)
    with pytest.raises(HostKeyUnknown, match="--accept-new"), s:
        pass
    pi = fleet.pis[1]
    other = tmp_path / "other_key"
    fakepis.sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other))
    (tmp_path / "known_hosts").write_text(f"{pi.address} {Path(f'{other}.pub').read_text()}")
    s, slept = session(fleet, pi.address, tmp_path)
    with pytest.raises(HostKeyChanged, match=f"piswarm deploy forget {pi.address}"), s:
        pass
    assert slept == []
