"""tools/hostnet.py, the check that ``make test`` leaves the host's network as it found it
(issue 12).  Run in a network namespace of the test's own (``unshare --net``): what it adds
there (a link, an iptables chain, a route) dies with the namespace."""

import os
import subprocess
import sys

from harness import REPO

TOOL = os.path.join(REPO, "tools", "hostnet.py")


def _in_own_netns(script: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(["unshare", "--net", "sh", "-euc", script, "sh", sys.executable, TOOL,
                           str(tmp_path / "net.json")], capture_output=True, text=True,
                          timeout=60)


def test_unchanged_network_passes(tmp_path):
    res = _in_own_netns('"$1" "$2" save "$3"; '
                        '"$1" "$2" check "$3"', tmp_path)
    assert res.returncode == 0, res
    assert "as the tests found it" in res.stdout


def test_what_a_test_left_is_named(tmp_path):
    res = _in_own_netns('"$1" "$2" save "$3"; ip link add pyrunctest0 type bridge; '
                        'ip link set lo up; ip route add 10.99.0.0/24 dev lo; '
                        'iptables -N PYRUNC-TEST; iptables -A PYRUNC-TEST -j RETURN; '
                        '"$1" "$2" check "$3"', tmp_path)
    assert res.returncode == 1, res
    for line in ("+ links: pyrunctest0 bridge", "+ iptables: :PYRUNC-TEST",
                 "+ iptables: -A PYRUNC-TEST -j RETURN", "+ routes: 10.99.0.0/24 dev lo"):
        assert line in res.stderr, res.stderr
