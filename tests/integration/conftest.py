"""Shared helpers for the integration tests: the real kiln binary ($KILN_BIN, default build/kiln)
and the Fashion-MNIST files from Debian's dataset-fashion-mnist package."""

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
KILN = Path(os.environ.get("KILN_BIN", REPO / "build" / "kiln"))
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def run_kiln(*args, check=True, timeout=900, env=None):
    """Runs `kiln ARGS...`; with check, a non-zero exit fails the test with kiln's stderr."""
    if not KILN.exists():
        raise AssertionError(f"kiln binary not found at {KILN}: build it, or set KILN_BIN")
    p = subprocess.run([str(KILN), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"kiln {' '.join(map(str, args))} exited {p.returncode}:\n{p.stderr}")
    return p


def fmnist_or_skip():
    """The Fashion-MNIST directory, or a skip that says why."""
    if not (FMNIST / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not installed at {FMNIST} (apt-get install dataset-fashion-mnist)")
    return FMNIST
