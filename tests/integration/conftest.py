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


# --- a real MLflow tracking server ------------------------------------------------------------

PROBE = Path(os.environ.get("KILN_MLFLOW_PROBE", KILN.parent / "tests" / "mlflow_probe"))


def _free_port():
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    """`mlflow server` on loopback: SQLite backend and a local artifacts folder under root, a free
    port, artifact serving on (the default). stop() and start() again keep the port and the data,
    for outage tests. With auth, MLflow's basic-auth app runs with its own user database and the
    admin credentials in admin_user / admin_password."""

    admin_user = "admin"
    admin_password = "kiln-test-admin-password"

    def __init__(self, root, auth=False):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.auth = auth
        self.proc = None
        self.log_path = self.root / "server.log"

    def _env(self):
        env = dict(os.environ)
        for k in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
                  "MLFLOW_TRACKING_TOKEN"):
            env.pop(k, None)
        if self.auth:
            # MLflow 3.17 ships no default admin password: the auth app refuses to start unless
            # the config (or MLFLOW_AUTH_ADMIN_PASSWORD) sets one.
            ini = self.root / "basic_auth.ini"
            ini.write_text(
                "[mlflow]\n"
                "default_permission = READ\n"
                f"database_uri = sqlite:///{self.root / 'basic_auth.db'}\n"
                f"admin_username = {self.admin_user}\n"
                f"admin_password = {self.admin_password}\n"
                "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            )
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(ini)
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = "kiln-test-secret"
        return env

    def start(self, timeout=120):
        import sys
        import time
        import urllib.request

        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(self.port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}",
               "--artifacts-destination", str(self.root / "artifacts")]
        if self.auth:
            cmd += ["--app-name", "basic-auth"]
        log = open(self.log_path, "ab")
        # Its own session, so stop() can end the server and its uvicorn workers together.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=self._env(), stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        self.stop()
        raise AssertionError(f"mlflow server did not come up on {self.uri}:\n{tail}")

    def stop(self):
        import signal

        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=15)
            except ProcessLookupError:
                pass
        self.proc = None

    def client_env(self, **extra):
        """The environment for kiln, the probe and MlflowClient talking to this server."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
        env["MLFLOW_TRACKING_URI"] = self.uri
        if self.auth:
            env["MLFLOW_TRACKING_USERNAME"] = self.admin_user
            env["MLFLOW_TRACKING_PASSWORD"] = self.admin_password
        env.update({k: str(v) for k, v in extra.items()})
        return env


def mlflow_or_skip():
    """The mlflow package (scripts/setup installs it into .venv), or a skip that says why."""
    return pytest.importorskip("mlflow", reason="mlflow is not installed (pip install mlflow[auth])")


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """One MLflow server for the whole session."""
    mlflow_or_skip()
    server = MlflowServer(tmp_path_factory.mktemp("mlflow")).start()
    yield server
    server.stop()


@pytest.fixture
def mlflow_server_factory(tmp_path):
    """Makes servers of the test's own (to stop and restart, or with auth); stops them after."""
    mlflow_or_skip()
    servers = []

    def make(auth=False):
        server = MlflowServer(tmp_path / f"mlflow{len(servers)}", auth=auth)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()


def run_probe(*args, env, check=True, timeout=300):
    """Runs tests/tools/mlflow_probe (built beside kiln as build/tests/mlflow_probe)."""
    if not PROBE.exists():
        raise AssertionError(f"mlflow_probe not found at {PROBE}: build the tests (KILN_TESTS=ON)")
    p = subprocess.run([str(PROBE), *map(str, args)], capture_output=True, text=True,
                       timeout=timeout, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"mlflow_probe {' '.join(map(str, args))} exited {p.returncode}:\n"
                             f"{p.stderr}")
    return p


# --- a small classifier and `kiln serve`, shared by the serving, client and output tests --------

LABELS = ["red", "green", "blue"]
FEATURES = 6


def write_dataset(path, rows=200, seed=5):
    """A three-class CSV of FEATURES numeric columns on very different scales (so the bundle's
    standard transform matters) and a label column; returns the rows as float32."""
    import csv

    import numpy as np

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)) * rng.uniform(0.5, 20, size=FEATURES) + rng.uniform(
        -5, 5, size=FEATURES
    )
    x = np.round(x, 4).astype(np.float32)
    w = rng.normal(size=(FEATURES, 3))
    z = ((x - x.mean(0)) / x.std(0)) @ w
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{j}" for j in range(FEATURES)] + ["label"])
        for i in range(rows):
            out.writerow([f"{v:.4f}" for v in x[i]] + [LABELS[int(np.argmax(z[i]))]])
    return x


def train_classifier(data, out, seed=1, epochs=3, val_fraction=0.2):
    """`kiln train` of a 6-16-3 tanh classifier on a write_dataset CSV into bundle folder out."""
    cfg = Path(str(out) + ".yaml")
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: label, val_fraction: {val_fraction}, "
        "transform: standard}\n"
        "model: {layers: 6-16-3, activation: tanh, dropout: 0.0, task: classification}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        f"train: {{batch_size: 32, epochs: {epochs}, seed: {seed}, threads: 1}}\n"
        f"output: {out}\n"
    )
    run_kiln("train", "--config", cfg)
    return out


def drift_data(d, train, held, shifted, shift):
    """For drift tests: a write_dataset CSV of train + held + shifted rows; a classifier trained
    on the first `train` rows with no validation split (so the bundle's reference profile is of
    exactly those rows) in d/model; the next `held` rows as they are and the last `shifted` rows
    with shift {feature: k} added (k standard deviations of the training column). Returns
    (training rows, held-out rows, shifted rows), float32."""
    import numpy as np

    x = write_dataset(d / "all.csv", rows=train + held + shifted)
    lines = (d / "all.csv").read_text().splitlines()
    (d / "train.csv").write_text("\n".join(lines[: train + 1]) + "\n")
    moved = x[train + held :].copy()
    for j, k in shift.items():
        moved[:, j] += np.float32(k * x[:train, j].std())
    train_classifier(d / "train.csv", d / "model", val_fraction=0.0)
    return x[:train], x[train : train + held], moved


def small_bundle(d):
    """(d, data.csv, its rows, the trained bundle) in folder d: what most serving tests serve."""
    data = d / "data.csv"
    x = write_dataset(data)
    return d, data, x, train_classifier(data, d / "model")


class KilnServe:
    """`kiln serve ARGS...` in its own process on a free loopback gRPC port (self.addr); ready
    once it prints its banner. models are added as --model NAME=BUNDLE."""

    def __init__(self, *args, models=(), env=None):
        import subprocess

        self.port = _free_port()
        self.addr = f"127.0.0.1:{self.port}"
        cmd = [str(KILN), "serve", "--port", str(self.port), *map(str, args)]
        for m in models:
            cmd += ["--model", str(m)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
        self.banner = self.proc.stdout.readline()  # printed once the ports are bound
        if not self.banner.startswith("serving"):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"kiln serve did not start: {self.banner!r}\n{err}")

    def stop(self, sig=None, timeout=30):
        """Sends sig (SIGTERM) and waits; returns the exit code. A server that does not stop in
        time is killed and fails the test."""
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"kiln serve did not stop on {sig or 'SIGTERM'} within {timeout}s")
        return self.proc.returncode
