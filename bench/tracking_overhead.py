"""Training step time with per-step MLflow logging on and off, in one run.

kiln trains the same model (784-512-256-10, batch 256, Fashion-MNIST, 1 thread) alternately with
tracking off and with tracking on to a real `mlflow server` (SQLite, local artifacts) on loopback;
every step logs train/loss, train/lr and train/samples_per_second, plus per-epoch and system
metrics. Training is pinned to CPU 0 and the server to CPU 1, so the server's own work does not
land on the trainer's core: what remains is kiln's logging path (the enqueue on the training
thread and the tracker thread sharing its core). Prints each trial's samples/s, the medians and
the overhead. Goal: <= 1%.

Usage: bench/tracking_overhead [--trials 3] [--epochs 2]   (needs .venv with mlflow: scripts/setup)
"""
import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(root):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    cmd = ["taskset", "-c", "1", sys.executable, "-m", "mlflow", "server", "--host",
           "127.0.0.1", "--port", str(port), "--workers", "1",
           "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
           "--artifacts-destination", f"{root}/artifacts"]
    proc = subprocess.Popen(cmd, stdout=open(f"{root}/server.log", "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    for _ in range(240):
        try:
            with urllib.request.urlopen(uri + "/health", timeout=2):
                return proc, uri
        except OSError:
            time.sleep(0.5)
    proc.kill()
    sys.exit("mlflow server did not start:\n" + Path(f"{root}/server.log").read_text()[-2000:])


def train(kiln, out, epochs, uri=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
        env["KILN_SPOOL_DIR"] = str(out) + ".spool"
    d = "/usr/share/datasets/fashion-mnist"
    cmd = ["taskset", "-c", "0", kiln, "train", "--quiet",
           "--config", str(REPO / "configs" / "fashion_mnist.yaml"),
           "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
           "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
           "--set", "data.test=", "--set", "data.val_fraction=0.1", "--set", "train.patience=0",
           "--set", "model.dropout=0", "--set", f"train.epochs={epochs}",
           "--set", "train.threads=1", "--set", "train.checkpoint_every=0",
           "--set", "tracking.experiment=overhead", "--set", f"output={out}"]
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"kiln train failed:\n{p.stderr}")
    return json.loads((Path(out) / "kiln.json").read_text())["training"]["metrics"][
        "samples_per_second"]


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiln", default=str(REPO / "build" / "kiln"))
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    if shutil.which("taskset") is None or os.cpu_count() < 2:
        sys.exit("needs taskset and 2 CPUs")
    with tempfile.TemporaryDirectory(prefix="kiln-overhead-") as root:
        proc, uri = start_server(root)
        try:
            off, on = [], []
            for t in range(args.trials):
                off.append(train(args.kiln, f"{root}/off{t}", args.epochs))
                on.append(train(args.kiln, f"{root}/on{t}", args.epochs, uri))
        finally:
            os.killpg(proc.pid, 15)
    mo, mn = statistics.median(off), statistics.median(on)
    steps_logged = 3
    print(f"bench/tracking_overhead: 784-512-256-10, batch 256, 1 thread on CPU 0, MLflow server "
          f"on CPU 1 ({uri}), {args.epochs} epochs x {args.trials} alternating trials, "
          f"{steps_logged} metrics per step + per-epoch + system metrics")
    print("  tracking off samples/s: " + ", ".join(f"{x:.0f}" for x in off) + f"  median {mo:.0f}")
    print("  tracking on  samples/s: " + ", ".join(f"{x:.0f}" for x in on) + f"  median {mn:.0f}")
    print(f"  overhead: {100 * (mo - mn) / mo:+.2f}% of step time (goal <= 1%)")


if __name__ == "__main__":
    main()
