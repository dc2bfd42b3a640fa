"""Training as a user runs it: `kiln train` on real Fashion-MNIST, bitwise determinism, resume
after a kill, the progress display on a terminal and off it, and clear errors for bad configs and
bad inputs. Every test drives the real kiln binary."""

import json
import os
import pty
import re
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KILN, REPO, run_kiln, fmnist_or_skip


def fmnist_args(d, out, *extra):
    return ["train", "--config", REPO / "configs" / "fashion_mnist.yaml",
            "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
            "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
            "--set", f"data.test={d}/t10k-images-idx3-ubyte.gz",
            "--set", f"data.test_labels={d}/t10k-labels-idx1-ubyte.gz",
            "--set", f"output={out}", *extra]


def weights_bytes(bundle):
    return (Path(bundle) / "model.safetensors").read_bytes()


def test_fashion_mnist_one_epoch_reaches_80_percent(tmp_path):
    d = fmnist_or_skip()
    out = tmp_path / "model"
    p = run_kiln(*fmnist_args(d, out, "--set", "train.epochs=1", "--set", "train.threads=2"))
    metrics = json.loads((out / "kiln.json").read_text())["training"]["metrics"]
    assert metrics["test_accuracy"] >= 0.80, p.stdout + p.stderr
    assert "test: loss" in p.stdout
    # The bundle alone reproduces the reported test accuracy on the held-out file.
    preds = tmp_path / "preds.csv"
    p = run_kiln("predict", "--model", out, "--input", d / "t10k-images-idx3-ubyte.gz",
                 "--labels", d / "t10k-labels-idx1-ubyte.gz", "--output", preds)
    acc = float(re.search(r"accuracy ([0-9.]+)", p.stderr).group(1))
    assert abs(acc - metrics["test_accuracy"]) < 1e-4
    header = preds.read_text().splitlines()[0]
    assert header.startswith("index,prediction,prob_T-shirt/top,prob_Trouser")


def small_run(d, out, *extra):
    return fmnist_args(d, out, "--set", "data.limit=3000", "--set", "data.test=",
                       "--set", "train.epochs=3", "--set", "train.batch_size=64",
                       "--set", "model.layers=784-64-32-10", "--set", "model.dropout=0.2",
                       "--set", "train.patience=0", "--set", "train.threads=2", *extra)


def test_same_config_gives_bitwise_identical_weights(tmp_path):
    d = fmnist_or_skip()
    run_kiln(*small_run(d, tmp_path / "a"))
    run_kiln(*small_run(d, tmp_path / "b"))
    run_kiln(*small_run(d, tmp_path / "c", "--set", "train.seed=7"))
    assert weights_bytes(tmp_path / "a") == weights_bytes(tmp_path / "b")
    assert weights_bytes(tmp_path / "a") != weights_bytes(tmp_path / "c")


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    d = fmnist_or_skip()
    ref = tmp_path / "ref"
    run_kiln(*small_run(d, ref, "--set", "train.checkpoint_every=10"))

    out = tmp_path / "killed"
    cmd = [str(KILN), *map(str, small_run(d, out, "--set", "train.checkpoint_every=10",
                                          "--set", "train.progress=none"))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt = tmp_path / "killed.ckpt"
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "no checkpoint was written before the kill"
    assert not (out / "model.safetensors").exists(), "the run finished before it could be killed"

    p = run_kiln(*small_run(d, out, "--set", "train.checkpoint_every=10"), "--resume")
    m = re.search(r"resuming from .* at step (\d+)", p.stderr)
    assert m and int(m.group(1)) > 0, p.stderr
    assert weights_bytes(out) == weights_bytes(ref)


def test_progress_bar_on_a_terminal_and_plain_lines_otherwise(tmp_path):
    d = fmnist_or_skip()
    args = small_run(d, tmp_path / "bar", "--set", "train.epochs=1")
    pid, fd = pty.fork()
    if pid == 0:
        os.execv(str(KILN), [str(KILN), *map(str, args)])
    chunks = []
    while True:
        r, _, _ = select.select([fd], [], [], 60)
        if not r:
            break
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    screen = b"".join(chunks).decode()
    assert "\r" in screen and "ETA" in screen and "samples/s" in screen and "[" in screen
    assert re.search(r"epoch 1/1 done: train_loss [0-9.]+ val_loss [0-9.]+ val_accuracy", screen)

    p = run_kiln(*small_run(d, tmp_path / "plain", "--set", "train.epochs=1",
                            "--set", "train.log_every=10"))
    assert "\r" not in p.stderr
    assert re.search(r"^epoch 1/1 step 10/\d+ loss [0-9.]+ lr ", p.stderr, re.M)


@pytest.mark.parametrize("setting,needle", [
    ("optim.lrate=0.1", 'unknown key "optim.lrate"'),
    ("data.transform=zscore", "data.transform: \"zscore\" is not one of none,standard,minmax"),
    ("model.layers=784-64-7", "model.layers: \"784-64-7\" has 7 outputs, the data has 10 classes"),
    ("model.layers=100-10", "takes 100 inputs, the data has 784 features"),
    ("train.batch_size=-3", "train.batch_size: -3 outside"),
])
def test_bad_config_is_refused_with_the_key_named(tmp_path, setting, needle):
    d = fmnist_or_skip()
    p = run_kiln(*small_run(d, tmp_path / "x", "--set", setting), check=False)
    assert p.returncode == 1
    assert needle in p.stderr, p.stderr


def test_bad_inputs_get_clear_errors(tmp_path):
    d = fmnist_or_skip()
    bundle = tmp_path / "m"
    run_kiln(*small_run(d, bundle, "--set", "train.epochs=1"))
    bad = tmp_path / "broken.idx"
    bad.write_bytes(b"\x00\x00\x08\x03" + (5).to_bytes(4, "big") + (28).to_bytes(4, "big")
                    + (28).to_bytes(4, "big") + b"\x00" * 100)
    p = run_kiln("predict", "--model", bundle, "--input", bad, check=False)
    assert p.returncode == 1 and "broken.idx" in p.stderr and "truncated" in p.stderr.lower(), p.stderr

    (bundle / "kiln.json").write_text((bundle / "kiln.json").read_text()[:200])
    p = run_kiln("predict", "--model", bundle, "--input", d / "t10k-images-idx3-ubyte.gz",
                 check=False)
    assert p.returncode == 1 and "kiln.json" in p.stderr, p.stderr

    p = run_kiln("train", "--config", tmp_path / "missing.yaml", check=False)
    assert p.returncode == 1 and "missing.yaml" in p.stderr
    p = run_kiln("train", "--bogus", check=False)
    assert p.returncode == 2


def test_early_stopping_keeps_the_best_epoch(tmp_path):
    d = fmnist_or_skip()
    out = tmp_path / "es"
    # 300 rows and a wide net overfit within a few epochs, so validation loss turns upward.
    p = run_kiln(*fmnist_args(d, out, "--set", "data.limit=300", "--set", "data.test=",
                              "--set", "data.val_fraction=0.3", "--set", "train.epochs=60",
                              "--set", "train.batch_size=32", "--set", "model.dropout=0",
                              "--set", "schedule.name=constant", "--set", "optim.lr=0.003",
                              "--set", "train.patience=2", "--set", "train.threads=2"))
    assert "stopped early" in p.stdout, p.stdout + p.stderr
    epochs = [float(v) for v in re.findall(r"epoch \d+/60 done: .* val_loss ([0-9.]+)", p.stderr)]
    assert 3 <= len(epochs) < 60
    metrics = json.loads((out / "kiln.json").read_text())["training"]["metrics"]
    # The bundle holds the best epoch's weights: its validation loss is the minimum seen.
    assert abs(metrics["val_loss"] - min(epochs)) < 1e-4, (metrics, epochs)
    assert metrics["val_loss"] < epochs[-1]


def test_device_auto_falls_back_and_explicit_cuda_explains(tmp_path):
    d = fmnist_or_skip()
    probe = run_kiln(*small_run(d, tmp_path / "auto", "--set", "train.epochs=1",
                                "--set", "train.device=auto"))
    gpu = "on cuda:" in probe.stderr
    if not gpu:
        assert "kiln: notice: CUDA unavailable (" in probe.stderr and "using the CPU" in probe.stderr
        p = run_kiln(*small_run(d, tmp_path / "cuda", "--set", "train.device=cuda"), check=False)
        assert p.returncode == 1
        assert 'device "cuda": CUDA unavailable (' in p.stderr, p.stderr
