"""kiln vs PyTorch on the CPU: 784-512-256-10 MLP, ReLU, batch 256, AdamW, fp32, Fashion-MNIST.

Both trainers start from kiln's initial weights (PyTorch loads kiln's init.safetensors), see the
same standardised inputs (PyTorch applies the shift/scale kiln stored in its bundle, in float32)
and the same batches in the same order (kiln's shuffle — splitmix64 Fisher-Yates, seeded per
epoch — is re-derived here), so their loss curves should agree to float rounding. Printed:
samples/s of each and the ratio, the largest loss difference over the first 100 steps, and each
one's test accuracy after the run.
"""
import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.numpy import load_file

DATA = "/usr/share/datasets/fashion-mnist"
M64 = (1 << 64) - 1


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def splitmix64(state):
    state = (state + 0x9E3779B97F4A7C15) & M64
    z = state
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return state, z ^ (z >> 31)


def seed_mix(a, b):
    s = a ^ 0x6A09E667F3BCC909
    s, h = splitmix64(s)
    s = h ^ b
    _, out = splitmix64(s)
    return out


def permutation(n, seed):
    """kiln's kl_permutation: unbiased Fisher-Yates driven by splitmix64."""
    a = list(range(n))
    st = seed
    for i in range(n - 1, 0, -1):
        bound = i + 1
        threshold = ((1 << 64) - bound) % bound
        while True:
            st, r = splitmix64(st)
            if r >= threshold:
                break
        j = r % bound
        a[i], a[j] = a[j], a[i]
    return np.array(a, dtype=np.int64)


def run_kiln(args, out):
    cmd = [
        args.kiln, "train", "--quiet",
        "--set", "data.format=idx",
        "--set", f"data.train={DATA}/train-images-idx3-ubyte.gz",
        "--set", f"data.train_labels={DATA}/train-labels-idx1-ubyte.gz",
        "--set", f"data.test={DATA}/t10k-images-idx3-ubyte.gz",
        "--set", f"data.test_labels={DATA}/t10k-labels-idx1-ubyte.gz",
        "--set", "data.val_fraction=0",
        "--set", "data.transform=standard",
        "--set", "model.layers=784-512-256-10",
        "--set", "model.activation=relu",
        "--set", "model.dropout=0",
        "--set", "optim.name=adamw",
        "--set", f"optim.lr={args.lr}",
        "--set", "optim.weight_decay=0.01",
        "--set", "schedule.name=constant",
        "--set", "train.batch_size=256",
        "--set", f"train.epochs={args.epochs}",
        "--set", f"train.seed={args.seed}",
        "--set", f"train.threads={args.threads}",
        "--set", "train.device=cpu",
        "--set", "train.save_init=true",
        "--set", f"train.loss_log={out}/kiln_loss.csv",
        "--set", f"output={out}/model",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kiln train failed:\n{res.stderr}")
    with open(f"{out}/model/kiln.json") as f:
        meta = json.load(f)
    losses = np.loadtxt(f"{out}/kiln_loss.csv", delimiter=",", skiprows=1, usecols=2)
    return meta, losses


def run_torch(args, out, meta):
    torch.set_num_threads(args.threads)
    pre = meta["preprocessing"]
    shift = np.array(pre["shift"], dtype=np.float32)
    scale = np.array(pre["scale"], dtype=np.float32)
    xtr = read_idx(f"{DATA}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    ytr = read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    yte = read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    xtr = torch.from_numpy((xtr - shift) * scale)
    xte = torch.from_numpy((xte - shift) * scale)
    ytr, yte = torch.from_numpy(ytr), torch.from_numpy(yte)

    init = load_file(f"{out}/model/init.safetensors")
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    )
    names = {"0": "fc1", "2": "fc2", "4": "fc3"}
    with torch.no_grad():
        for key, p in model.state_dict().items():
            idx, kind = key.split(".")
            p.copy_(torch.from_numpy(init[f"{names[idx]}.{kind}"]))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                            betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, B = xtr.shape[0], 256
    perms = [torch.from_numpy(permutation(n, seed_mix(args.seed, e))) for e in range(args.epochs)]
    losses = []
    t0 = time.perf_counter()
    for e in range(args.epochs):
        perm = perms[e]
        for s in range(0, n, B):
            idx = perm[s : s + B]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return np.array(losses), n * args.epochs / seconds, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as out:
        meta, kiln_losses = run_kiln(args, out)
        km = meta["training"]["metrics"]
        torch_losses, torch_sps, torch_acc = run_torch(args, out, meta)
    k = min(100, len(kiln_losses), len(torch_losses))
    diff = np.abs(kiln_losses[:k] - torch_losses[:k])
    kiln_sps = km["samples_per_second"]
    print(f"bench/train_cpu: 784-512-256-10 relu, batch 256, AdamW lr {args.lr}, fp32, "
          f"{args.threads} threads, {args.epochs} epochs, Fashion-MNIST (60000 train / 10000 test)")
    print(f"  torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"  kiln   samples/s {kiln_sps:10.0f}   test accuracy {km['test_accuracy']:.4f}")
    print(f"  torch  samples/s {torch_sps:10.0f}   test accuracy {torch_acc:.4f}")
    print(f"  throughput ratio kiln/torch: {kiln_sps / torch_sps:.2f}x")
    print(f"  loss curves, first {k} steps: max |kiln - torch| = {diff.max():.3g} "
          f"(at step {int(diff.argmax())}; losses {kiln_losses[0]:.4f} -> {kiln_losses[k-1]:.4f})")
    print(f"  final-step losses: kiln {kiln_losses[-1]:.4f}, torch {torch_losses[-1]:.4f}")


if __name__ == "__main__":
    main()
