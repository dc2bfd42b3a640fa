"""Data-parallel training on the CPU path: scaling from 1 to 2 ranks, and the all-reduce's bus
bandwidth against MPI's own, in one run.

Scaling: `kiln train` on Fashion-MNIST (784-512-256-10, global batch 256, AdamW, 2 epochs),
  A. one rank, one thread (one core);
  B. `mpirun -np 2`, one thread per rank (two cores), the same global batch (128 rows a rank);
  C. the peer: one process with two threads (the same two cores, no data parallelism).
Trials alternate A, B, C so the machine's drift hits all alike; each keeps its best samples/s
(the trainer's own figure: training rows over the loop's wall time, validation included).
Scaling efficiency = B / (2 × A); B / C says whether two ranks beat two threads.

All-reduce: tests/tools/allreduce_bench under `mpirun -np 2` times kiln's ring
(runtime/collectives) and MPI_Allreduce on the same buffers, 4 KiB to 64 MiB and the model's
gradient size (535 818 floats); bus bandwidth = bytes × 2(N−1)/N / time (nccl-tests' convention).

Usage: bench/data_parallel [--trials 3] [--epochs 2]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILN = REPO / "build" / "kiln"
ALLREDUCE = REPO / "build" / "tests" / "allreduce_bench"
CONFIG = REPO / "configs" / "fashion_mnist.yaml"
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def train(out, ranks, threads, epochs):
    sets = [f"train.threads={threads}", "train.device=cpu", f"train.epochs={epochs}",
            "train.progress=none", "train.patience=0", "train.checkpoint_every=0",
            "model.dropout=0", f"output={out}"]
    cmd = [str(KILN), "train", "--config", str(CONFIG)]
    for s in sets:
        cmd += ["--set", s]
    if ranks > 1:
        cmd = ["mpirun", "-np", str(ranks), "--bind-to", "core", *cmd]
    p = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=1800)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stdout}\n{p.stderr}")
    sps = float(re.search(r"\(([\d.]+) samples/s\)", p.stdout).group(1))
    acc = float(re.search(r"test: loss [\d.]+ accuracy ([\d.]+)", p.stdout).group(1))
    return sps, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    args = ap.parse_args()
    if not shutil.which("mpirun"):
        sys.exit("mpirun not found: apt-get install openmpi-bin libopenmpi-dev")
    cores = os.cpu_count()
    print(f"machine: {cores} cores; OpenMPI "
          f"{subprocess.run(['mpirun', '--version'], capture_output=True, text=True).stdout.split()[3]}")
    configs = {"A 1 rank x 1 thread": (1, 1), "B 2 ranks x 1 thread": (2, 1),
               "C 1 rank x 2 threads": (1, 2)}
    best = {k: (0.0, 0.0) for k in configs}
    with tempfile.TemporaryDirectory() as tmp:
        for t in range(args.trials):
            for name, (ranks, threads) in configs.items():
                sps, acc = train(Path(tmp) / f"m{t}{ranks}{threads}", ranks, threads, args.epochs)
                print(f"trial {t + 1} {name}: {sps:9.0f} samples/s, test accuracy {acc:.4f}",
                      flush=True)
                if sps > best[name][0]:
                    best[name] = (sps, acc)
    a, b, c = (best[k][0] for k in configs)
    print("\n== scaling (best of %d trials, %d epochs) ==" % (args.trials, args.epochs))
    for name in configs:
        print(f"  {name}: {best[name][0]:9.0f} samples/s  (test accuracy {best[name][1]:.4f})")
    print(f"  scaling efficiency 1 -> 2 ranks: B / (2 x A) = {b / (2 * a):.2f}  "
          f"(speed-up {b / a:.2f}x)")
    print(f"  2 ranks vs the peer, 1 process with 2 threads: B / C = {b / c:.2f}x")

    print("\n== all-reduce bus bandwidth, 2 ranks: kiln's ring vs MPI_Allreduce ==", flush=True)
    p = subprocess.run(["mpirun", "-np", "2", "--bind-to", "core", str(ALLREDUCE)],
                       capture_output=True, text=True, env=ENV, timeout=600)
    if p.returncode != 0:
        sys.exit(f"allreduce_bench failed:\n{p.stdout}\n{p.stderr}")
    print(p.stdout, end="")
    rows = [line.split() for line in p.stdout.splitlines() if line.split()[0].isdigit()]
    grad = [r for r in rows if r[0] == "535818"][0]
    print(f"  gradient buffer (535 818 floats, 2.1 MB): kiln {float(grad[4]):.2f} GB/s vs MPI "
          f"{float(grad[5]):.2f} GB/s -> kiln/MPI = {float(grad[6]):.2f}")


if __name__ == "__main__":
    main()
