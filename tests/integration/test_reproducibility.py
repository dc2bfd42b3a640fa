"""Bitwise reproducibility on the CPU path: the same data (digest), config and seed give the
same weights, byte for byte; another seed gives other weights. Run through the real `kiln train`
on a small CSV model and on a one-epoch Fashion-MNIST subset (dropout on, two threads)."""

import hashlib
import json
import os
import time

import pytest

from conftest import REPO, fmnist_or_skip, run_kiln, write_dataset

NO_TRACKING = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def train(out, args, seed):
    run_kiln("train", *args, "--set", f"train.seed={seed}", "--set", "train.device=cpu",
             "--set", "train.progress=none", "--set", "train.checkpoint_every=0",
             "--set", f"output={out}", env=NO_TRACKING)
    meta = json.loads((out / "kiln.json").read_text())
    return (out / "model.safetensors").read_bytes(), meta


def assert_reproducible(tmp_path, args):
    a, meta_a = train(tmp_path / "a", args, seed=7)
    b, meta_b = train(tmp_path / "b", args, seed=7)
    assert hashlib.sha256(a).hexdigest() == hashlib.sha256(b).hexdigest()
    assert a == b
    # Same data: the digest the bundle records; same preprocessing fitted on it.
    assert meta_a["training_data_digest"] == meta_b["training_data_digest"]
    assert meta_a["training_data_digest"].startswith("sha256:")
    assert meta_a["preprocessing"] == meta_b["preprocessing"]
    c, meta_c = train(tmp_path / "c", args, seed=8)
    assert meta_c["training_data_digest"] == meta_a["training_data_digest"]
    assert len(c) == len(a) and c != a


def test_csv_model_same_seed_same_bytes(tmp_path):
    write_dataset(tmp_path / "train.csv", rows=300, seed=3)
    (tmp_path / "train.yaml").write_text(
        f"data: {{format: csv, train: {tmp_path / 'train.csv'}, label_column: label, "
        "val_fraction: 0.2, transform: standard}\n"
        "model: {layers: 6-16-3, activation: tanh, dropout: 0.1, task: classification}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 5, threads: 1}\n")
    assert_reproducible(tmp_path, ["--config", tmp_path / "train.yaml"])


def test_fashion_mnist_subset_same_seed_same_bytes(tmp_path):
    d = fmnist_or_skip()
    args = ["--config", REPO / "configs" / "fashion_mnist.yaml",
            "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
            "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
            "--set", "data.test=", "--set", "data.limit=10000", "--set", "train.epochs=1",
            "--set", "model.layers=784-128-10", "--set", "train.threads=2",
            "--set", "train.patience=0"]
    t0 = time.monotonic()
    first, _ = train(tmp_path / "probe", args, seed=7)
    if time.monotonic() - t0 > 60:
        pytest.skip("one Fashion-MNIST epoch took over 60 s on this machine")
    assert_reproducible(tmp_path, args)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == first
