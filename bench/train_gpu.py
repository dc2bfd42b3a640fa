"""kiln vs PyTorch on one GPU, in one run: the same MLPs, the same data, the same precision.

Part 1, launch-bound: 784-512-256-10 ReLU, batch 256, AdamW (lr 1e-3, weight decay 0.01, 100
warm-up steps then cosine to 1e-5), fp32, Fashion-MNIST (60000 train / 10000 test). PyTorch starts
from kiln's initial weights (kiln's init.safetensors), sees the same standardised inputs (kiln's
shift/scale from kiln.json) and the same batches in the same order (kiln's splitmix64 shuffle,
re-derived here). kiln (train.device=cuda, train.cuda_graph=true) against PyTorch
  - eager (AdamW fused=True),
  - CUDA graphs: the whole step (forward, loss, backward, AdamW with capturable=True and a tensor
    learning rate read on the device) captured once and replayed, batches copied into static
    input tensors; the epoch's short last batch runs eagerly,
  - torch.compile of model + loss (mode "default", dynamic=False), AdamW fused=True.
PyTorch holds the whole dataset on the GPU, so its timings exclude data loading; kiln copies each
batch host->device (its real path) and reports its own samples/s over its whole training loop,
first steps (graph capture, cuBLASLt set-up) included. PyTorch's time starts after warm-up.
Goals: kiln >= 2x eager, >= 1.2x graphs and >= 1.2x compile.

Part 2, math-bound: 4096-4096-4096-10 ReLU, batch 8192, AdamW, on synthetic data (a float32 IDX
file written to /tmp, labels from a random linear map), at train.precision fp32, tf32 and bf16
against PyTorch eager at the matching setting (float32 matmul precision "highest" / "high";
autocast to bfloat16). Also times cuBLAS through torch at the step's GEMM shapes and reports each
engine's achieved GEMM TFLOP/s against that rate. Goal: kiln >= 1.0x PyTorch.

Without a CUDA device it prints "no CUDA device: skipped" and exits 0; `--device cpu` instead
runs every non-CUDA code path on a small problem (a smoke test of this script, not a benchmark).
"""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile
import time

from kiln_reference import kiln_lr, permutation, read_idx, seed_mix  # noqa: E402
T0 = time.perf_counter()


def log(msg=""):
    print(msg, flush=True)


# --- files ----------------------------------------------------------------------------------------


def write_idx_f32(path, x):
    """x: 2-D float32 array -> IDX type 0x0D (big-endian float32)."""
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x0D, 2]) + struct.pack(">II", *x.shape))
        step = 4096
        for i in range(0, x.shape[0], step):
            f.write(x[i : i + step].astype(">f4").tobytes())


def write_idx_u8(path, y):
    with open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", y.shape[0]))
        f.write(y.astype("uint8").tobytes())


# --- kiln -----------------------------------------------------------------------------------------
class KilnError(Exception):
    pass


def run_kiln(args, out, tag, sets):
    """Runs `kiln train` with --set overrides; returns (kiln.json, per-step losses, device line)."""
    import numpy as np

    outdir = os.path.join(out, tag)
    loss_csv = os.path.join(out, f"{tag}_loss.csv")
    cmd = [args.kiln, "train"]
    for key, value in list(sets.items()) + [
        ("train.progress", "none"),
        ("train.loss_log", loss_csv),
        ("output", outdir),
    ]:
        cmd += ["--set", f"{key}={value}"]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise KilnError(f"kiln train ({tag}) failed (exit {res.returncode}):\n{res.stderr.strip()}")
    device = next((l for l in res.stderr.splitlines() if l.startswith("training ")), "")
    notices = [l for l in res.stderr.splitlines() if "notice" in l]
    want = "cpu" if args.device == "cpu" else "cuda"
    if f" on {want}" not in device:
        raise KilnError(f"kiln ({tag}) did not train on {want}: {device!r} {' '.join(notices)}")
    with open(os.path.join(outdir, "kiln.json")) as f:
        meta = json.load(f)
    losses = np.loadtxt(loss_csv, delimiter=",", skiprows=1, usecols=2, ndmin=1)
    return meta, losses


# --- PyTorch helpers ------------------------------------------------------------------------------
class Env:
    """What the torch side needs: the module, the device, a timer."""

    def __init__(self, torch, device):
        self.torch = torch
        self.dev = torch.device(device)
        self.cuda = self.dev.type == "cuda"

    def sync(self):
        if self.cuda:
            self.torch.cuda.synchronize()

    def set_precision(self, precision):
        # "highest": true fp32 GEMMs; "high": TF32 tensor cores. bf16 goes through autocast.
        self.torch.set_float32_matmul_precision("high" if precision == "tf32" else "highest")

    def autocast(self, precision):
        import contextlib

        if precision == "bf16":
            return self.torch.autocast(device_type=self.dev.type, dtype=self.torch.bfloat16)
        return contextlib.nullcontext()


def make_mlp(env, sizes, init=None):
    torch = env.torch
    mods = []
    for i in range(len(sizes) - 1):
        mods.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods).to(env.dev)
    if init is not None:
        linears = [m for m in model if isinstance(m, torch.nn.Linear)]
        with torch.no_grad():
            for k, lin in enumerate(linears):
                lin.weight.copy_(torch.from_numpy(init[f"fc{k + 1}.weight"]))
                lin.bias.copy_(torch.from_numpy(init[f"fc{k + 1}.bias"]))
    return model


def make_adamw(env, params, lr, wd, capturable=False, kinds=("fused", "foreach")):
    """AdamW, the first of `kinds` the device allows; returns (optimizer, implementation)."""
    torch = env.torch
    params = list(params)
    kw = dict(lr=lr, weight_decay=wd, betas=(0.9, 0.999), eps=1e-8)
    if capturable:
        kw["capturable"] = True
    extra = {"fused": dict(fused=True), "foreach": dict(foreach=True)}
    tries = [(k, extra[k]) for k in kinds if env.cuda or k == "foreach"]
    err = None
    for name, extra in tries:
        try:
            return torch.optim.AdamW(params, **kw, **extra), name
        except (RuntimeError, ValueError, TypeError) as e:
            err = e
    raise err


def reset_state(env, model, init_params, opt):
    """Puts the weights back to their initial values and the optimizer's state to zero, in place
    (a captured CUDA graph holds these very tensors)."""
    torch = env.torch
    with torch.no_grad():
        for p, w in zip(model.parameters(), init_params):
            p.copy_(w)
        for st in opt.state.values():
            for v in st.values():
                if torch.is_tensor(v):
                    v.zero_()


# --- part 1: the launch-bound MLP -----------------------------------------------------------------
SMALL = [784, 512, 256, 10]


def small_kiln_sets(args, data, epochs, graph=True):
    sets = {
        "data.format": "idx",
        "data.train": f"{data}/train-images-idx3-ubyte.gz",
        "data.train_labels": f"{data}/train-labels-idx1-ubyte.gz",
        "data.test": f"{data}/t10k-images-idx3-ubyte.gz",
        "data.test_labels": f"{data}/t10k-labels-idx1-ubyte.gz",
        "data.val_fraction": "0",
        "data.transform": "standard",
        "data.limit": str(args.limit),
        "model.layers": "-".join(map(str, SMALL)),
        "model.activation": "relu",
        "model.dropout": "0",
        "optim.name": "adamw",
        "optim.lr": str(args.lr),
        "optim.weight_decay": "0.01",
        "schedule.name": "cosine",
        "schedule.warmup_steps": str(args.warmup),
        "schedule.min_lr": str(args.min_lr),
        "train.batch_size": str(args.batch),
        "train.epochs": str(epochs),
        "train.seed": str(args.seed),
        "train.patience": "0",
        "train.checkpoint_every": "0",
        "train.save_init": "true",
    }
    if args.device == "cpu":
        sets["train.device"] = "cpu"
        sets["train.threads"] = str(os.cpu_count() or 1)
    else:
        sets["train.device"] = "cuda"
        sets["train.precision"] = "fp32"
        sets["train.cuda_graph"] = "true" if graph else "false"
    return sets


def small_data(env, meta, data, limit):
    """Fashion-MNIST standardised with kiln's shift/scale (float32, as kiln does), on the device."""
    import numpy as np

    torch = env.torch
    pre = meta["preprocessing"]
    shift = np.array(pre["shift"], dtype=np.float32)
    scale = np.array(pre["scale"], dtype=np.float32)
    xtr = read_idx(f"{data}/train-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    ytr = read_idx(f"{data}/train-labels-idx1-ubyte.gz").astype(np.int64)
    if limit:
        xtr, ytr = xtr[:limit], ytr[:limit]
    xte = read_idx(f"{data}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float32)
    yte = read_idx(f"{data}/t10k-labels-idx1-ubyte.gz").astype(np.int64)
    if limit:  # kiln's data.limit cuts the test set too
        xte, yte = xte[:limit], yte[:limit]
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(env.dev)
    return t((xtr - shift) * scale), t(ytr), t((xte - shift) * scale), t(yte)


class SmallRun:
    """One PyTorch variant of part 1, set up once (weights, optimizer, compiled code or graph)
    and then timed over whole runs from the initial weights."""

    def __init__(self, env, args, variant, data, perms, init):
        import torch.nn.functional as F

        torch = env.torch
        self.env, self.args, self.variant = env, args, variant
        self.xtr, self.ytr, self.xte, self.yte = data
        self.perms = perms  # one device index tensor per epoch
        self.n = self.xtr.shape[0]
        self.B = args.batch
        self.steps_per_epoch = (self.n + self.B - 1) // self.B
        self.total = self.steps_per_epoch * len(perms)
        self.lrs = [kiln_lr(args.lr, args.min_lr, args.warmup, s, self.total)
                    for s in range(self.total)]
        env.set_precision("fp32")
        self.model = make_mlp(env, SMALL, init)
        self.init_params = [p.detach().clone() for p in self.model.parameters()]
        self.F = F
        self.compile_s = 0.0
        if variant == "graphs":
            # Fused AdamW first; should its capture fail, the foreach implementation.
            for kinds in (("fused",), ("foreach",)):
                try:
                    self._setup_graph(kinds)
                    break
                except Exception as e:
                    if kinds == ("foreach",):
                        raise
                    log(f"  torch  graphs: capture with {kinds[0]} AdamW failed "
                        f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:200]}); "
                        "trying foreach")
                    self.model.zero_grad(set_to_none=True)
        else:
            self.opt, self.impl = make_adamw(env, self.model.parameters(), args.lr, 0.01)
            self.loss_fn = lambda x, y: F.cross_entropy(self.model(x), y)
            if variant == "compile":
                self.loss_fn = torch.compile(self.loss_fn, mode="default", dynamic=False)
            # Warm-up: cuBLAS handles, the allocator, compilation (both batch shapes).
            t0 = time.perf_counter()
            self.run(max_steps=max(3, min(20, self.steps_per_epoch - 1)))
            tail = self.n % self.B
            if tail:
                self._eager_step(self.perms[0][self.n - tail :], 0)
            env.sync()
            self.compile_s = time.perf_counter() - t0

    # eager and compile ------------------------------------------------------------------------
    def _eager_step(self, idx, step):
        xb = self.xtr.index_select(0, idx)
        yb = self.ytr.index_select(0, idx)
        for g in self.opt.param_groups:
            g["lr"] = self.lrs[step]
        self.opt.zero_grad(set_to_none=True)
        loss = self.loss_fn(xb, yb)
        loss.backward()
        self.opt.step()
        return loss.detach()

    # graphs ---------------------------------------------------------------------------------------
    def _setup_graph(self, kinds):
        env, torch, F = self.env, self.env.torch, self.F
        dev = env.dev
        lr0 = torch.tensor(self.lrs[0], dtype=torch.float32, device=dev)
        self.opt, self.impl = make_adamw(env, self.model.parameters(), lr0, 0.01,
                                         capturable=True, kinds=kinds)
        self.impl += ", capturable"
        # Whatever tensor the optimizer keeps as its learning rate is updated in place, on the
        # device, from the step counter: the replayed graph needs no host-side scalar.
        self.lr_t = self.opt.param_groups[0]["lr"]
        self.lrs_t = torch.tensor(self.lrs, dtype=torch.float32, device=dev)
        self.ctr = torch.zeros(1, dtype=torch.long, device=dev)
        self.loss_buf = torch.zeros(self.total + 64, dtype=torch.float32, device=dev)
        self.static_x = torch.empty(self.B, SMALL[0], dtype=torch.float32, device=dev)
        self.static_y = torch.empty(self.B, dtype=torch.long, device=dev)
        idx = self.perms[0][: self.B]
        torch.index_select(self.xtr, 0, idx, out=self.static_x)
        torch.index_select(self.ytr, 0, idx, out=self.static_y)
        model, opt = self.model, self.opt

        def body(x, y):
            self.lr_t.copy_(self.lrs_t.index_select(0, self.ctr).reshape(self.lr_t.shape))
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            self.loss_buf.index_copy_(0, self.ctr, loss.detach().reshape(1))
            self.ctr.add_(1)

        self.body = body
        t0 = time.perf_counter()
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                body(self.static_x, self.static_y)
        torch.cuda.current_stream().wait_stream(s)
        self.graph = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)  # backward in the graph allocates .grad from its pool
        with torch.cuda.graph(self.graph):
            body(self.static_x, self.static_y)
        torch.cuda.synchronize()
        self.compile_s = time.perf_counter() - t0

    def _graph_tail(self, idx):
        """The epoch's short last batch, eagerly, on the same tensors the graph uses."""
        self.opt.zero_grad(set_to_none=False)  # the grads live in the graph's pool: zero them
        self.body(self.xtr.index_select(0, idx), self.ytr.index_select(0, idx))

    # one run --------------------------------------------------------------------------------------
    def run(self, max_steps=None):
        """Trains from the initial weights over all epochs (or max_steps): (seconds, steps)."""
        env, torch = self.env, self.env.torch
        reset_state(env, self.model, self.init_params, self.opt)
        self.losses = []
        B, n = self.B, self.n
        full = n - n % B
        steps = 0
        env.sync()
        t0 = time.perf_counter()
        if self.variant == "graphs":
            self.ctr.zero_()
            for perm in self.perms:
                for s in range(0, full, B):
                    if max_steps is not None and steps >= max_steps:
                        break
                    idx = perm[s : s + B]
                    torch.index_select(self.xtr, 0, idx, out=self.static_x)
                    torch.index_select(self.ytr, 0, idx, out=self.static_y)
                    self.graph.replay()
                    steps += 1
                if full < n and (max_steps is None or steps < max_steps):
                    self._graph_tail(perm[full:])
                    steps += 1
            env.sync()
            seconds = time.perf_counter() - t0
            self.losses = self.loss_buf[:steps].cpu().numpy()
        else:
            losses = []
            for perm in self.perms:
                for s in range(0, n, B):
                    if max_steps is not None and steps >= max_steps:
                        break
                    losses.append(self._eager_step(perm[s : s + B], steps))
                    steps += 1
            env.sync()
            seconds = time.perf_counter() - t0
            self.losses = torch.stack(losses).cpu().numpy() if losses else []
        return seconds, steps

    def accuracy(self):
        torch = self.env.torch
        with torch.no_grad():
            return (self.model(self.xte).argmax(1) == self.yte).float().mean().item()


def part_small(args, env, out, res):
    import numpy as np
    from safetensors.numpy import load_file

    torch = env.torch
    E = args.epochs
    log(f"== part 1: {'-'.join(map(str, SMALL))} relu, batch {args.batch}, AdamW lr {args.lr} "
        f"(warm-up {args.warmup}, cosine to {args.min_lr}), fp32, {E} epochs of Fashion-MNIST "
        f"({args.data})")
    kiln_trials = []
    meta, kiln_losses = run_kiln(args, out, "small0", small_kiln_sets(args, args.data, E))
    km = meta["training"]["metrics"]
    kiln_trials.append(km["samples_per_second"])
    log(f"  kiln   run 1: {km['samples_per_second']:10.0f} samples/s, {km['steps']:.0f} steps, "
        f"test accuracy {km.get('test_accuracy', float('nan')):.4f}")
    init = load_file(os.path.join(out, "small0", "init.safetensors"))
    data = small_data(env, meta, args.data, args.limit)
    n = data[0].shape[0]
    perms = [torch.tensor(permutation(n, seed_mix(args.seed, e)), dtype=torch.long, device=env.dev)
             for e in range(E)]
    samples_per_run = n * E

    variants = ["eager"]
    if env.cuda and not args.no_graphs:
        variants.append("graphs")
    runs = {}
    for v in variants:
        try:
            runs[v] = SmallRun(env, args, v, data, perms, init)
            log(f"  torch  {v}: set up ({runs[v].impl} AdamW"
                f"{', capture %.2fs' % runs[v].compile_s if v == 'graphs' else ''})")
        except Exception as e:  # report and go on: one peer failing must not hide the others
            log(f"  torch  {v}: FAILED to set up: {type(e).__name__}: {e}")
    torch_trials = {v: [] for v in runs}
    torch_losses, torch_acc = {}, {}
    for t in range(args.trials):
        if t > 0:
            meta_t, _ = run_kiln(args, out, f"small{t}", small_kiln_sets(args, args.data, E))
            kiln_trials.append(meta_t["training"]["metrics"]["samples_per_second"])
        for v, r in runs.items():
            try:
                sec, _ = r.run()
                torch_trials[v].append(samples_per_run / sec)
                if t == 0:
                    torch_losses[v] = np.asarray(r.losses, dtype=np.float64)
                    torch_acc[v] = r.accuracy()
            except Exception as e:
                log(f"  torch  {v}: FAILED: {type(e).__name__}: {e}")
    for v in runs:
        if torch_trials[v]:
            log(f"  torch  {v}: {max(torch_trials[v]):10.0f} samples/s (best of "
                f"{', '.join('%.0f' % x for x in torch_trials[v])}), test accuracy "
                f"{torch_acc.get(v, float('nan')):.4f}")
    res["small"] = {
        "kiln": max(kiln_trials), "kiln_trials": kiln_trials,
        "kiln_acc": km.get("test_accuracy", float("nan")), "kiln_losses": kiln_losses,
        "torch": {v: max(x) for v, x in torch_trials.items() if x},
        "torch_trials": torch_trials, "torch_acc": torch_acc, "torch_losses": torch_losses,
        "impl": {v: r.impl for v, r in runs.items()},
        "capture_s": runs["graphs"].compile_s if "graphs" in runs else None,
    }
    if env.cuda and not args.no_nograph:
        try:
            m2, _ = run_kiln(args, out, "small_nograph",
                             small_kiln_sets(args, args.data, E, graph=False))
            res["small"]["kiln_nograph"] = m2["training"]["metrics"]["samples_per_second"]
            log(f"  kiln   train.cuda_graph=false: {res['small']['kiln_nograph']:10.0f} samples/s")
        except KilnError as e:
            log(f"  kiln   train.cuda_graph=false: FAILED: {e}")
    del runs
    # Keep what the compile peer needs for later (it runs last: its compile time is the least
    # predictable part of the bench).
    res["_small_ctx"] = (data, perms, init, samples_per_run)


def part_small_compile(args, env, res):
    if "_small_ctx" not in res:
        return
    data, perms, init, samples_per_run = res.pop("_small_ctx")
    if not env.cuda or args.no_compile:
        return
    left = args.budget_s - (time.perf_counter() - T0)
    if left < 120:
        log(f"  torch  compile: skipped ({left:.0f}s of budget left, it needs ~120s)")
        res["small"]["compile_note"] = "skipped (budget)"
        return
    import signal

    def out_of_time(signum, frame):
        raise TimeoutError(f"over the bench's budget ({args.budget_s:.0f}s)")

    # torch.compile's time is the least predictable: stop it (and still print the report)
    # rather than let the caller's timeout kill the whole run.
    signal.signal(signal.SIGALRM, out_of_time)
    signal.alarm(max(1, int(left - 20)))
    try:
        r = SmallRun(env, args, "compile", data, perms, init)
        log(f"  torch  compile: compiled and warmed up in {r.compile_s:.1f}s ({r.impl} AdamW)")
        trials = []
        for t in range(args.trials):
            sec, _ = r.run()
            trials.append(samples_per_run / sec)
            if t == 0:
                import numpy as np

                res["small"]["torch_losses"]["compile"] = np.asarray(r.losses, dtype=np.float64)
                res["small"]["torch_acc"]["compile"] = r.accuracy()
        res["small"]["torch"]["compile"] = max(trials)
        res["small"]["torch_trials"]["compile"] = trials
        res["small"]["impl"]["compile"] = r.impl
        log(f"  torch  compile: {max(trials):10.0f} samples/s (best of "
            f"{', '.join('%.0f' % x for x in trials)}), test accuracy "
            f"{res['small']['torch_acc']['compile']:.4f}")
    except Exception as e:
        first = (str(e).splitlines() or [""])[0][:300]
        log(f"  torch  compile: FAILED: {type(e).__name__}: {first}")
        res["small"]["compile_note"] = f"failed: {type(e).__name__}"
    finally:
        signal.alarm(0)


# --- part 2: the math-bound MLP -------------------------------------------------------------------
def wide_sizes(args):
    return [args.wide_dim, args.wide_dim, args.wide_dim, 10]


def gemm_flops_per_sample(sizes):
    """Forward, weight gradients, and input gradients of every layer but the first (whose input
    needs none): 2 FLOPs per multiply-add."""
    pairs = [(sizes[i], sizes[i + 1]) for i in range(len(sizes) - 1)]
    fwd = sum(2 * a * b for a, b in pairs)
    dx = sum(2 * a * b for a, b in pairs[1:])
    return fwd + fwd + dx


def make_wide_data(args, out):
    import numpy as np

    rng = np.random.default_rng(args.seed)
    N, D = args.wide_rows, args.wide_dim
    x = rng.standard_normal((N, D), dtype=np.float32)
    w = rng.standard_normal((D, 10), dtype=np.float32)
    y = (x @ w).argmax(1).astype(np.uint8)
    xp, yp = os.path.join(out, "wide-x.idx"), os.path.join(out, "wide-y.idx")
    write_idx_f32(xp, x)
    write_idx_u8(yp, y)
    return x, y, xp, yp


def wide_kiln(args, out, xp, yp, precision, steps):
    spe = (args.wide_rows + args.wide_batch - 1) // args.wide_batch
    sets = {
        "data.format": "idx", "data.train": xp, "data.train_labels": yp,
        "data.val_fraction": "0", "data.transform": "none",
        "model.layers": "-".join(map(str, wide_sizes(args))), "model.activation": "relu",
        "model.dropout": "0", "optim.name": "adamw", "optim.lr": "1e-4",
        "optim.weight_decay": "0.01", "schedule.name": "constant", "schedule.warmup_steps": "0",
        "train.batch_size": str(args.wide_batch), "train.epochs": str(-(-steps // spe)),
        "train.max_steps": str(steps), "train.seed": str(args.seed), "train.patience": "0",
        "train.checkpoint_every": "0",
    }
    if args.device == "cpu":
        sets.update({"train.device": "cpu", "train.threads": str(os.cpu_count() or 1)})
    else:
        sets.update({"train.device": "cuda", "train.precision": precision,
                     "train.cuda_graph": "true"})
    meta, losses = run_kiln(args, out, f"wide_{precision}", sets)
    return meta["training"]["metrics"]["samples_per_second"], losses


def wide_torch(args, env, X, Y, precision, steps, Xh=None, Yh=None):
    """PyTorch eager at the matching precision; returns (samples/s, AdamW kind, first and last
    loss). Batches come from X, Y on the device, or, given host tensors Xh, Yh, are gathered on
    the host into one of two pinned buffers (the gather of the next batch overlaps the device's
    work on this one) and copied host->device: kiln's own data path, for comparison."""
    import torch.nn.functional as F

    torch = env.torch
    env.set_precision(precision)
    model = make_mlp(env, wide_sizes(args))
    opt, impl = make_adamw(env, model.parameters(), 1e-4, 0.01)
    B, N, D = args.wide_batch, X.shape[0], X.shape[1]
    g = torch.Generator()
    g.manual_seed(args.seed)
    perm = torch.randperm(N, generator=g)
    batches = [perm[s : s + B] for s in range(0, N - B + 1, B)] or [perm[:B]]
    if Xh is None:
        batches = [b.to(env.dev) for b in batches]

        def fetch(i):
            idx = batches[i % len(batches)]
            return X.index_select(0, idx), Y.index_select(0, idx)
    else:
        pin = env.cuda
        hx = [torch.empty(B, D, pin_memory=pin) for _ in range(2)]
        hy = [torch.empty(B, dtype=torch.long, pin_memory=pin) for _ in range(2)]
        dx = torch.empty(B, D, device=env.dev)
        dy = torch.empty(B, dtype=torch.long, device=env.dev)
        done = [None, None]

        def fetch(i):
            k = i % 2
            if done[k] is not None:
                done[k].synchronize()  # the copy that last read this pinned buffer has finished
            idx = batches[i % len(batches)]
            torch.index_select(Xh, 0, idx, out=hx[k])
            torch.index_select(Yh, 0, idx, out=hy[k])
            dx.copy_(hx[k], non_blocking=True)
            dy.copy_(hy[k], non_blocking=True)
            if env.cuda:
                done[k] = torch.cuda.Event()
                done[k].record()
            return dx, dy

    def step(i):
        xb, yb = fetch(i)
        opt.zero_grad(set_to_none=True)
        with env.autocast(precision):
            loss = F.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
        return loss.detach()

    for i in range(3):
        step(i)
    env.sync()
    t0 = time.perf_counter()
    losses = [step(i) for i in range(steps)]
    env.sync()
    sec = time.perf_counter() - t0
    first, last = losses[0].item(), losses[-1].item()
    return steps * B / sec, impl, first, last


def time_op(env, fn, reps):
    torch = env.torch
    for _ in range(2):
        fn()
    if env.cuda:
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        b.synchronize()
        return a.elapsed_time(b) / 1e3 / reps
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def cublas_rate(args, env, precision):
    """cuBLAS (through torch) at the step's big GEMM shapes: forward X.W^T [B,D]x[D,D], input
    gradient dY.W, weight gradient dY^T.X [D,B]x[B,D]. Returns (seconds per step's D x D GEMMs,
    TFLOP/s over them)."""
    torch = env.torch
    env.set_precision(precision)
    dt = torch.bfloat16 if precision == "bf16" else torch.float32
    B, D = args.wide_batch, args.wide_dim
    x = torch.randn(B, D, device=env.dev, dtype=dt)
    w = torch.randn(D, D, device=env.dev, dtype=dt)
    dy = torch.randn(B, D, device=env.dev, dtype=dt)
    reps = 10 if env.cuda else 2
    t_fwd = time_op(env, lambda: torch.nn.functional.linear(x, w), reps)
    t_dx = time_op(env, lambda: dy @ w, reps)
    t_dw = time_op(env, lambda: dy.t() @ x, reps)
    # Two D x D layers: forward and weight gradient for both, input gradient for the second.
    sec = 2 * t_fwd + 2 * t_dw + t_dx
    flops = 5 * 2 * B * D * D
    return sec, flops / sec / 1e12


def part_wide(args, env, out, res):
    import numpy as np

    torch = env.torch
    sizes = wide_sizes(args)
    fps = gemm_flops_per_sample(sizes)
    log(f"== part 2: {'-'.join(map(str, sizes))} relu, batch {args.wide_batch}, AdamW, "
        f"synthetic {args.wide_rows} x {args.wide_dim} float32 IDX; "
        f"{fps / 1e9:.3f} GFLOP of GEMMs per sample")
    t0 = time.perf_counter()
    x, y, xp, yp = make_wide_data(args, out)
    log(f"  data: wrote {os.path.getsize(xp) / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f}s")
    Xh = torch.from_numpy(x)
    Yh = torch.from_numpy(y.astype(np.int64))
    X, Y = Xh.to(env.dev), Yh.to(env.dev)
    res["wide"] = {"fps": fps, "rows": {}}
    for p in args.precisions:
        steps = args.wide_steps_fp32 if p == "fp32" else args.wide_steps
        left = args.budget_s - (time.perf_counter() - T0)
        if left < 30:
            log(f"  {p}: skipped ({left:.0f}s of budget left)")
            continue
        row = {}
        try:
            row["kiln"], kl = wide_kiln(args, out, xp, yp, p, steps)
            row["kiln_loss"] = (float(kl[0]), float(kl[-1]))
        except KilnError as e:
            row["kiln_error"] = str(e).splitlines()[-1][:300]
            log(f"  {p}: kiln FAILED: {e}")
        try:
            row["torch"], row["impl"], f, l = wide_torch(args, env, X, Y, p, steps)
            row["torch_loss"] = (f, l)
        except Exception as e:
            row["torch_error"] = f"{type(e).__name__}: {e}"
            log(f"  {p}: torch FAILED: {row['torch_error']}")
        if not args.no_host_fed:
            try:
                row["torch_host"] = wide_torch(args, env, X, Y, p, steps, Xh, Yh)[0]
            except Exception as e:
                log(f"  {p}: torch host-fed FAILED: {type(e).__name__}: {e}")
        try:
            row["gemm_s"], row["gemm_tflops"] = cublas_rate(args, env, p)
        except Exception as e:
            log(f"  {p}: cuBLAS timing FAILED: {type(e).__name__}: {e}")
        if env.cuda:
            torch.cuda.empty_cache()
        res["wide"]["rows"][p] = row
        k, t = row.get("kiln"), row.get("torch")
        log(f"  {p}: {steps} steps; kiln {k or 0:8.0f} samples/s ({(k or 0) * fps / 1e12:6.1f} "
            f"TFLOP/s), torch {t or 0:8.0f} samples/s ({(t or 0) * fps / 1e12:6.1f} TFLOP/s), "
            f"torch host-fed {row.get('torch_host', 0):8.0f} samples/s, "
            f"cuBLAS alone {row.get('gemm_tflops', 0):6.1f} TFLOP/s"
            + (f"; losses kiln {row['kiln_loss'][0]:.3f}->{row['kiln_loss'][1]:.3f}"
               if "kiln_loss" in row else "")
            + (f", torch {row['torch_loss'][0]:.3f}->{row['torch_loss'][1]:.3f}"
               if "torch_loss" in row else ""))
    del X, Y, Xh, Yh, x
    for f in (xp, yp):
        os.remove(f)


# --- report ---------------------------------------------------------------------------------------
def report(args, env, res, goals_file):
    import numpy as np

    torch = env.torch
    goals = []  # (text, met)
    log()
    log("=" * 100)
    dev = torch.cuda.get_device_name(0) if env.cuda else "CPU (smoke test, not a benchmark)"
    log(f"bench/train_gpu: {dev}; PyTorch {torch.__version__}; kiln {args.kiln}")
    s = res.get("small")
    if s:
        log(f"part 1 (launch-bound) 784-512-256-10, batch {args.batch}, fp32, "
            f"{args.epochs} epochs:")
        log(f"  {'engine':34s} {'samples/s':>12s} {'kiln / it':>10s} {'test acc':>9s}")
        klabel = "kiln (cuda_graph on)" if env.cuda else "kiln (CPU)"
        log(f"  {klabel:34s} {s['kiln']:12.0f} {'':>10s} {s['kiln_acc']:9.4f}   best of "
            f"{', '.join('%.0f' % x for x in s['kiln_trials'])}")
        if "kiln_nograph" in s:
            log(f"  {'kiln (cuda_graph off)':34s} {s['kiln_nograph']:12.0f} "
                f"{s['kiln'] / s['kiln_nograph']:9.2f}x")
        names = {"eager": "PyTorch eager", "graphs": "PyTorch CUDA graphs",
                 "compile": "PyTorch torch.compile"}
        want = {"eager": 2.0, "graphs": 1.2, "compile": 1.2}
        for v in ("eager", "graphs", "compile"):
            label = f"{names[v]} ({s['impl'].get(v, '-')} AdamW)"
            if v in s["torch"]:
                ratio = s["kiln"] / s["torch"][v]
                log(f"  {label:34s} {s['torch'][v]:12.0f} {ratio:9.2f}x "
                    f"{s['torch_acc'].get(v, float('nan')):9.4f}")
                if env.cuda:
                    goals.append((f"kiln >= {want[v]}x {names[v]} ({ratio:.2f}x)",
                                  ratio >= want[v]))
            elif env.cuda:
                note = s.get("compile_note", "not measured") if v == "compile" else "failed"
                log(f"  {label:34s} {note:>12s}")
                goals.append((f"kiln >= {want[v]}x {names[v]} (not measured: {note})", False))
        kl = s["kiln_losses"]
        for v, tl in s["torch_losses"].items():
            k = min(100, len(kl), len(tl))
            if k:
                d = np.abs(kl[:k] - tl[:k])
                log(f"  loss curve, first {k} steps, kiln vs {names[v]}: max |diff| {d.max():.3g} "
                    f"(step 0 {d[0]:.2g}); final loss kiln {kl[-1]:.4f}, torch {tl[-1]:.4f}")
        accs = [a for a in s["torch_acc"].values() if not math.isnan(a)]
        if accs and not math.isnan(s["kiln_acc"]):
            gap = max(abs(s["kiln_acc"] - a) for a in accs)
            log(f"  test accuracy: kiln {s['kiln_acc']:.4f}; largest gap to a PyTorch peer "
                f"{gap:.4f}")
    w = res.get("wide")
    if w and w["rows"]:
        fps = w["fps"]
        log(f"part 2 (math-bound) {'-'.join(map(str, wide_sizes(args)))}, batch {args.wide_batch}:")
        log(f"  {'precision':9s} {'kiln/s':>9s} {'torch/s':>9s} {'kiln/torch':>10s} "
            f"{'torch host-fed/s':>16s} {'kiln TF/s':>9s} {'torch TF/s':>10s} "
            f"{'cuBLAS TF/s':>11s} {'kiln % of cuBLAS':>16s}")
        for p, r in w["rows"].items():
            k, t, g = r.get("kiln"), r.get("torch"), r.get("gemm_tflops")
            ratio = k / t if k and t else None
            pct = 100 * k * fps / 1e12 / g if k and g else None
            f = lambda v, spec: format(v, spec) if v is not None else "-"
            log(f"  {p:9s} {f(k, '9.0f'):>9s} {f(t, '9.0f'):>9s} "
                f"{(f(ratio, '9.2f') + 'x') if ratio else '-':>10s} "
                f"{f(r.get('torch_host'), '16.0f'):>16s} "
                f"{f(k * fps / 1e12 if k else None, '9.1f'):>9s} "
                f"{f(t * fps / 1e12 if t else None, '10.1f'):>10s} {f(g, '11.1f'):>11s} "
                f"{f(pct, '15.0f') + '%' if pct else '-':>16s}")
            if env.cuda:
                got = "%.2fx" % ratio if ratio else r.get("kiln_error", "not measured")
                goals.append((f"kiln >= 1.0x PyTorch at {p} ({got})", bool(ratio and ratio >= 1.0)))
        log("  (TFLOP/s count GEMM work only: forward, weight and input gradients; cuBLAS alone is "
            f"torch.matmul at the step's {args.wide_dim}-wide GEMM shapes, no epilogues)")
    if goals:
        met = sum(1 for _, ok in goals if ok)
        log("goals:")
        for text, ok in goals:
            log(f"  [{'MET' if ok else 'NOT MET'}] {text}")
        summary = f"{met} of {len(goals)} met" + "".join(
            f"; NOT MET: {t}" for t, ok in goals if not ok)
        log(f"goals: {summary}")
        if goals_file:
            with open(goals_file, "w") as fh:
                fh.write(summary + "\n")
    log(f"bench/train_gpu: {time.perf_counter() - T0:.0f}s")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build-gpu/kiln", help="the kiln binary (CUDA build)")
    ap.add_argument("--data", default=os.environ.get("KILN_FMNIST_DIR",
                                                     "/usr/share/datasets/fashion-mnist"),
                    help="Fashion-MNIST folder (env KILN_FMNIST_DIR)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default="cuda",
                    help="cpu: smoke-test this script's non-CUDA paths on a small problem")
    ap.add_argument("--epochs", type=int, default=10, help="part 1 epochs (default 10)")
    ap.add_argument("--trials", type=int, default=2, help="timed runs per engine; best is kept")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--limit", type=int, default=0, help="use the first N training rows (0 = all)")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr", type=float, default=1e-5)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--wide-rows", type=int, default=32768)
    ap.add_argument("--wide-dim", type=int, default=4096)
    ap.add_argument("--wide-batch", type=int, default=8192)
    ap.add_argument("--wide-steps", type=int, default=100, help="part 2 steps at tf32 and bf16")
    ap.add_argument("--wide-steps-fp32", type=int, default=40, help="part 2 steps at fp32")
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    ap.add_argument("--skip-small", action="store_true")
    ap.add_argument("--skip-wide", action="store_true")
    ap.add_argument("--no-graphs", action="store_true", help="skip the PyTorch CUDA-graph peer")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile peer")
    ap.add_argument("--no-host-fed", action="store_true",
                    help="skip part 2's PyTorch run fed from host memory like kiln")
    ap.add_argument("--no-nograph", action="store_true",
                    help="skip the extra kiln run with train.cuda_graph=false")
    ap.add_argument("--budget-s", type=float, default=240,
                    help="seconds this run may take; optional parts are skipped to fit")
    ap.add_argument("--goals-file", help="write the one-line goals summary here")
    args = ap.parse_args()
    args.precisions = [p for p in args.precisions.split(",") if p]

    try:
        import torch
    except Exception as e:  # no torch: nothing to compare against
        log(f"no CUDA device: skipped (torch not importable: {e})")
        return 0
    if args.device == "cuda" and not torch.cuda.is_available():
        log("no CUDA device: skipped")
        return 0
    if not os.access(args.kiln, os.X_OK):
        log(f"bench/train_gpu: kiln binary not found: {args.kiln} (build with -DKILN_CUDA=ON)")
        return 1
    env = Env(torch, args.device)
    if args.device == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    else:
        p = torch.cuda.get_device_properties(0)
        log(f"bench/train_gpu: {p.name}, {p.multi_processor_count} SMs, "
            f"{p.total_memory / 2**30:.0f} GiB; PyTorch {torch.__version__} (CUDA "
            f"{torch.version.cuda}); budget {args.budget_s:.0f}s")
    res = {}
    ok = True
    with tempfile.TemporaryDirectory(prefix="kiln-bench-gpu-") as out:
        try:
            if not args.skip_small:
                part_small(args, env, out, res)
        except KilnError as e:
            log(f"part 1: kiln FAILED: {e}")
            ok = False
        if not args.skip_wide:
            part_wide(args, env, out, res)
            if any("kiln_error" in r for r in res.get("wide", {}).get("rows", {}).values()):
                ok = False
        part_small_compile(args, env, res)
    report(args, env, res, args.goals_file)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
