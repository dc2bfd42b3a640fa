"""Multi-node MPI on one machine: two network namespaces joined by a veth pair stand in for two
hosts (scripts/netns-hosts), and mpirun starts one rank in each through a launcher agent in place
of ssh; the ranks talk TCP over the veth, never shared memory. The collectives' C tests
(test_collectives, built beside kiln) pass across them. Needs root and `ip netns`: CI's fresh
Debian 12 VM runs as root; elsewhere the tests skip and say why."""

import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import KILN, REPO
from test_data_parallel import one_process, train_args, weights

NETNS_HOSTS = REPO / "scripts" / "netns-hosts"
# Built beside kiln, as the MLflow probe is (build/tests/test_collectives).
COLLECTIVES = Path(os.environ.get("KILN_TEST_COLLECTIVES",
                                  KILN.parent / "tests" / "test_collectives"))


def netns_or_skip():
    """Skips unless this machine lets us make network namespaces and has the tools to use them."""
    if os.geteuid() != 0:
        pytest.skip("needs root: network namespaces (ip netns add) need CAP_SYS_ADMIN")
    for tool, package in (("ip", "iproute2"), ("unshare", "util-linux"), ("mpirun", "openmpi-bin")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not found (apt-get install {package})")
    probe = f"kiln-probe-{os.getpid()}"
    p = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        pytest.skip(f"`ip netns add` is not permitted here: {p.stderr.strip()}")
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, timeout=30)


class NetnsHosts:
    """Two namespaces made by scripts/netns-hosts: names (also their host names) and addresses
    net.1 and net.2. Names and subnet of their own, so a developer's kiln-h1/kiln-h2 survive."""

    names = ("kiln-test1", "kiln-test2")
    net = "10.251.78"

    def env(self, base=None):
        """base (default os.environ) plus the settings that point scripts/netns-hosts at these."""
        env = dict(os.environ if base is None else base)
        env["KILN_NETNS_NAMES"] = " ".join(self.names)
        env["KILN_NETNS_NET"] = self.net
        return env

    def script(self, *args, timeout=60):
        p = subprocess.run([str(NETNS_HOSTS), *args], capture_output=True, text=True,
                           timeout=timeout, env=self.env())
        if p.returncode != 0:
            raise AssertionError(f"scripts/netns-hosts {' '.join(args)} exited {p.returncode}:\n"
                                 f"{p.stdout}{p.stderr}")
        return p

    def kill_all(self):
        """Kills whatever runs in the namespaces: what mpirun leaves when it is killed."""
        for name in self.names:
            p = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                               timeout=30)
            for pid in p.stdout.split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def netns_id(self, name):
        """The namespace's id as /proc/PID/ns/net shows it: net:[inode]."""
        return f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"

    def veth_bytes(self, name):
        """(received, sent) bytes on the veth's end in namespace name."""
        p = subprocess.run(["ip", "-j", "-s", "-n", name, "link", "show"], capture_output=True,
                           text=True, timeout=30, check=True)
        (link,) = [x for x in json.loads(p.stdout) if x["ifname"] != "lo"]
        return link["stats64"]["rx"]["bytes"], link["stats64"]["tx"]["bytes"]


@pytest.fixture(scope="module")
def netns_hosts():
    """The two namespaces, up for this module's tests; always removed after (with anything a
    failed run left running in them)."""
    netns_or_skip()
    hosts = NetnsHosts()
    try:
        hosts.script("up")
        yield hosts
    finally:
        hosts.script("down")


def run_netns(hosts, argv, export=None, env=None, np=2, timeout=120, check=True):
    """Runs argv under mpirun across hosts' namespaces (`scripts/netns-hosts run`): np ranks,
    one in each namespace with np=2. env is the environment (default os.environ), as for
    run_kiln; export's variables are added to it and passed to every rank with mpirun -x, as a
    real multi-node launch needs. (Here the ranks inherit the rest of env too, since the agent
    starts the second daemon locally: a variable left out of export goes unnoticed.) With
    check, a non-zero exit fails the test with the output of both ranks and mpirun; past
    timeout, everything in the namespaces is killed."""
    export = {k: str(v) for k, v in (export or {}).items()}
    full = hosts.env(env)
    full.update(export)
    full["KILN_NETNS_EXPORT"] = " ".join(export)
    cmd = [str(NETNS_HOSTS), "run", "-np", str(np), "--", *map(str, argv)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full)
    except subprocess.TimeoutExpired:
        hosts.kill_all()  # the ranks, and the daemon in the second namespace, outlive mpirun
        raise
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


def test_collectives_across_two_namespaces(netns_hosts):
    if not COLLECTIVES.exists():
        raise AssertionError(f"test_collectives not found at {COLLECTIVES}: build the tests "
                             "(KILN_TESTS=ON), or set KILN_TEST_COLLECTIVES")
    h1, h2 = netns_hosts.names
    before = netns_hosts.veth_bytes(h1)
    # Each rank says where it runs, then becomes the test (exec: same process, same namespace).
    where = ('echo "where rank=$OMPI_COMM_WORLD_RANK host=$(hostname) '
             'netns=$(readlink /proc/self/ns/net) $KILN_NETNS_PROBE"; exec "$0"')
    p = run_netns(netns_hosts, ["/bin/sh", "-c", where, COLLECTIVES],
                  export={"KILN_NETNS_PROBE": "exported"})
    after = netns_hosts.veth_bytes(h1)
    out = p.stdout + p.stderr

    found = re.findall(r"^where rank=(\d+) host=(\S+) netns=(\S+) (\S*)$", p.stdout, re.M)
    ranks = {int(r): (host, ns, probe) for r, host, ns, probe in found}
    assert sorted(ranks) == [0, 1], out
    # Rank 0 in the first namespace and rank 1 in the second, neither in ours; each with its
    # namespace's host name; both got the exported variable.
    assert ranks[0] == (h1, netns_hosts.netns_id(h1), "exported"), out
    assert ranks[1] == (h2, netns_hosts.netns_id(h2), "exported"), out
    assert os.readlink("/proc/self/ns/net") not in (ranks[0][1], ranks[1][1])
    # MPI sees two hosts: each rank is alone on its own (local rank 0).
    for r in (0, 1):
        assert f"rank {r} of 2, local rank 0, backend mpi" in p.stdout, out
    # Both ranks' cmocka runs passed, every test.
    passed = re.findall(r"^\[  PASSED  \] (\d+) test", out, re.M)
    assert len(passed) == 2 and passed[0] == passed[1] and int(passed[0]) > 0, out
    assert "FAILED" not in out, out
    # The data crossed the veth: the 3M-float (12 MiB) all-reduce alone needs each rank to
    # receive at least the other's 12 MiB worth; shared memory would leave the veth idle.
    received, sent = after[0] - before[0], after[1] - before[1]
    assert received > 8 << 20 and sent > 8 << 20, (received, sent)


def test_train_one_model_across_two_hosts(netns_hosts, tmp_path):
    """`kiln train` with one rank per "host": the job trains over TCP between the namespaces and
    its weights are bit for bit those of the two-rank emulation in one process."""
    h1, _ = netns_hosts.names
    sets = ["data.limit=12000", "train.epochs=2"]
    before = netns_hosts.veth_bytes(h1)
    p = run_netns(netns_hosts, train_args(tmp_path / "job", *sets), timeout=300)
    after = netns_hosts.veth_bytes(h1)
    assert "data parallel: 2 ranks (mpi)" in p.stderr, p.stderr
    assert p.stdout.count("bundle:") == 1, p.stdout  # rank 0 alone writes and reports
    one_process(train_args(tmp_path / "emulated", *sets, "train.emulate_ranks=2"))
    got, want = weights(tmp_path / "job"), weights(tmp_path / "emulated")
    for name in want:
        assert np.array_equal(got[name], want[name]), f"{name}: two hosts != emulated 2 ranks"
    # 2 epochs x 43 steps, each all-reducing 101 770 floats: half of them each way per step.
    sent = after[1] - before[1]
    assert sent > 86 * 101770 * 4 // 2, sent
