"""kiln vs PyTorch on the CPU: 784-512-256-10 MLP, ReLU, batch 256, AdamW, fp32, Fashion-MNIST.

Both trainers start from kiln's initial weights (PyTorch loads kiln's init.safetensors), see the
same standardised inputs (PyTorch applies the shift/scale kiln stored in its bundle, in float32)
and the same batches in the same order (kiln's shuffle — splitmix64 Fisher-Yates, seeded per
epoch — is re-derived here), so their loss curves should agree to float rounding. Printed:
samples/s of each and the ratio, the largest loss difference over the first 100 steps, and each
one's test accuracy after the run.
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from safetensors.numpy import load_file

DATA = "/usr/share/datasets/fashion-mnist"
from kiln_reference import kiln_lr as reference_lr  # noqa: E402
from kiln_reference import permutation, read_idx, seed_mix  # noqa: E402




def kiln_lr(args, step, total):
    return reference_lr(args.lr, args.min_lr, args.warmup, step, total)


def run_kiln(args, out, epochs=None, tag="run"):
    epochs = epochs or args.epochs
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
        "--set", "schedule.name=cosine",
        "--set", f"schedule.warmup_steps={args.warmup}",
        "--set", f"schedule.min_lr={args.min_lr}",
        "--set", "train.batch_size=256",
        "--set", f"train.epochs={epochs}",
        "--set", f"train.seed={args.seed}",
        "--set", f"train.threads={args.threads}",
        "--set", "train.device=cpu",
        "--set", "train.save_init=true",
        "--set", f"train.loss_log={out}/{tag}_loss.csv",
        "--set", f"output={out}/{tag}",
    ]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"kiln train failed:\n{res.stderr}")
    with open(f"{out}/{tag}/kiln.json") as f:
        meta = json.load(f)
    losses = np.loadtxt(f"{out}/{tag}_loss.csv", delimiter=",", skiprows=1, usecols=2)
    return meta, losses


def load_data(meta):
    """Fashion-MNIST standardised with the shift/scale kiln stored, in float32 as kiln does."""
    pre = meta["preprocessing"]
    shift = np.array(pre["shift"], dtype=np.float32)
    scale = np.array(pre["scale"], dtype=np.float32)
    xtr = read_idx(f"{DATA}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    ytr = read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64)
    xte = read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    yte = read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    return (torch.from_numpy((xtr - shift) * scale), torch.from_numpy(ytr),
            torch.from_numpy((xte - shift) * scale), torch.from_numpy(yte))


def run_torch(args, out, data, perms, dtype=torch.float32, max_steps=None):
    """Trains the same MLP from kiln's initial weights on kiln's batch order. Returns the
    per-step losses, samples/s and test accuracy."""
    torch.set_num_threads(args.threads)
    xtr, ytr, xte, yte = data
    xtr, xte = xtr.to(dtype), xte.to(dtype)
    init = load_file(f"{out}/run/init.safetensors")
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 512), torch.nn.ReLU(),
        torch.nn.Linear(512, 256), torch.nn.ReLU(),
        torch.nn.Linear(256, 10),
    ).to(dtype)
    names = {"0": "fc1", "2": "fc2", "4": "fc3"}
    with torch.no_grad():
        for key, p in model.state_dict().items():
            idx, kind = key.split(".")
            p.copy_(torch.from_numpy(init[f"{names[idx]}.{kind}"]))
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01,
                            betas=(0.9, 0.999), eps=1e-8)
    n, B = xtr.shape[0], 256
    total = len(perms) * ((n + B - 1) // B)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda st: kiln_lr(args, st, total) / args.lr)
    loss_fn = torch.nn.CrossEntropyLoss()
    losses = []
    samples = 0
    t0 = time.perf_counter()
    for perm in perms:
        for s in range(0, n, B):
            if max_steps is not None and len(losses) >= max_steps:
                break
            idx = perm[s : s + B]
            xb, yb = xtr[idx], ytr[idx]
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            samples += len(idx)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        acc = (model(xte).argmax(1) == yte).float().mean().item()
    return np.array(losses), samples / seconds, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--trials", type=int, default=2,
                    help="extra alternating 2-epoch throughput trials per engine")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiln-bench-") as out:
        meta, kiln_losses = run_kiln(args, out)
        km = meta["training"]["metrics"]
        data = load_data(meta)
        perms = [torch.tensor(permutation(data[0].shape[0], seed_mix(args.seed, e)))
                 for e in range(args.epochs)]
        torch_losses, torch_sps, torch_acc = run_torch(args, out, data, perms)
        # The exact trajectory, to size float32 rounding: PyTorch in float64, same start.
        exact, _, _ = run_torch(args, out, data, perms[:1], torch.float64, max_steps=100)
        # This machine's speed drifts (shared cores); alternate short runs and keep each
        # engine's best, so both are measured under the same conditions.
        kiln_trials = [km["samples_per_second"]]
        torch_trials = [torch_sps]
        for t in range(args.trials):
            km2, _ = run_kiln(args, out, epochs=2, tag=f"trial{t}")
            kiln_trials.append(km2["training"]["metrics"]["samples_per_second"])
            torch_trials.append(run_torch(args, out, data, perms[:2])[1])
    k = min(100, len(kiln_losses), len(torch_losses), len(exact))
    kt = np.abs(kiln_losses[:k] - torch_losses[:k])
    ke = np.abs(kiln_losses[:k] - exact[:k])
    te = np.abs(torch_losses[:k] - exact[:k])
    kiln_sps, torch_sps = max(kiln_trials), max(torch_trials)
    print(f"bench/train_cpu: 784-512-256-10 relu, batch 256, AdamW lr {args.lr} "
          f"(warm-up {args.warmup}, cosine to {args.min_lr}), fp32, "
          f"{args.threads} threads, {args.epochs} epochs, Fashion-MNIST (60000 train / 10000 test)")
    print(f"  peer: PyTorch {torch.__version__} eager, {torch.get_num_threads()} threads, "
          f"same initial weights (kiln's init.safetensors), same inputs, same batch order")
    fmt = lambda xs: ", ".join(f"{x:.0f}" for x in xs)
    print(f"  kiln   samples/s {kiln_sps:10.0f} (best of {fmt(kiln_trials)})")
    print(f"  torch  samples/s {torch_sps:10.0f} (best of {fmt(torch_trials)})")
    print(f"  test accuracy after {args.epochs} epochs: kiln {km['test_accuracy']:.4f}, "
          f"torch {torch_acc:.4f}")
    print(f"  throughput ratio kiln/torch: {kiln_sps / torch_sps:.2f}x")
    print(f"  loss curves, first {k} steps (max abs difference):")
    print(f"    kiln  vs torch fp32: {kt.max():.3g}  (step 0: {kt[0]:.2g}, step 10: {kt[min(10, k-1)]:.2g})")
    print(f"    kiln  vs torch fp64: {ke.max():.3g}")
    print(f"    torch fp32 vs fp64:  {te.max():.3g}  <- the float32 rounding envelope")
    print(f"  losses: step 0 {kiln_losses[0]:.4f}, step {k-1} {kiln_losses[k-1]:.4f}; "
          f"final kiln {kiln_losses[-1]:.4f}, torch {torch_losses[-1]:.4f}")


if __name__ == "__main__":
    main()
