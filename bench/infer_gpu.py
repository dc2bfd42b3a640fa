"""kiln's batched inference path against PyTorch on the same device, batch 1 to 4096.

What is timed, per call, for one batch of B rows held in host memory (as the server holds them):
  - kiln: tests/tools/infer_bench (C, libkiln): the bundle's input transform on the host
    (kl_bundle_apply_transform) then kl_mlp_predict (copy in, forward, softmax, copy out): what
    serving/batcher.c runs for a batch;
  - PyTorch eager: the host tensor .to(device), (x - shift) * scale, the same MLP (nn.Linear +
    activation; dropout is off at inference), softmax for classification, .cpu(), under
    torch.inference_mode();
  - PyTorch CUDA graph (CUDA only): the host rows copied into a static device tensor, a graph of
    transform + MLP + softmax captured once per batch size and replayed, the output .cpu().
Both engines run fp32 (PyTorch with TF32 off), load the same bundle (model.safetensors, kiln.json's
shift/scale), see the same synthetic rows (drawn so that the transformed features are N(0, 1)),
warm up, then time calls until at least --min-reps calls and --min-ms milliseconds; the median is
reported. The table's ratios are kiln's time over PyTorch's: below 1, kiln is faster.
Check: the probabilities of all --max-batch rows agree within --tol (max abs diff, default 1e-4).

`--device cpu` runs the same comparison on the CPU with --threads threads each (a smoke test of this
script and of the driver's CPU path, not a GPU benchmark). Exit status: 0, 1 if the outputs
disagree or a run fails, 2 for a device that is not there.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

T0 = time.perf_counter()


def log(msg=""):
    print(msg, flush=True)


def load_bundle(path):
    import numpy as np
    from safetensors.numpy import load_file

    with open(os.path.join(path, "kiln.json")) as f:
        meta = json.load(f)
    arch = meta["architecture"]
    layers = arch["layers"]
    tensors = load_file(os.path.join(path, "model.safetensors"))
    weights = []
    for i in range(len(layers) - 1):
        w = tensors[f"fc{i + 1}.weight"].astype(np.float32)
        b = tensors[f"fc{i + 1}.bias"].astype(np.float32)
        assert w.shape == (layers[i + 1], layers[i]), (w.shape, layers)
        weights.append((w, b))
    pre = meta.get("preprocessing", {})
    transform = pre.get("transform", "none")
    shift = scale = None
    if transform != "none" and pre.get("shift") is not None:
        shift = np.asarray(pre["shift"], dtype=np.float32)
        scale = np.asarray(pre["scale"], dtype=np.float32)
    return {
        "layers": layers,
        "activation": arch["activation"],
        "task": arch.get("task", "classification"),
        "weights": weights,
        "shift": shift,
        "scale": scale,
    }


def make_inputs(bundle, rows, seed):
    """Raw rows whose transformed features are N(0, 1) (or N(0, 1) without a transform)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((rows, bundle["layers"][0]), dtype=np.float32)
    if bundle["shift"] is None:
        return z
    scale = np.where(bundle["scale"] != 0, bundle["scale"], 1).astype(np.float32)
    return (bundle["shift"] + z / scale).astype(np.float32)


def batch_sizes(max_batch):
    sizes, b = [], 1
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return sizes + [max_batch]


def run_kiln(args, bundle_dir, input_path, output_path):
    cmd = [
        args.driver, bundle_dir, input_path, "--device", args.device, "--max-batch",
        str(args.max_batch), "--warmup", str(args.warmup), "--min-reps", str(args.min_reps),
        "--min-ms", str(args.min_ms), "--max-reps", str(args.max_reps), "--output", output_path,
    ]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    log("$ " + " ".join(cmd))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout_s)
    if p.stderr.strip():
        log(p.stderr.rstrip())
    if p.returncode != 0:
        raise RuntimeError(f"infer_bench exited {p.returncode}")
    out = {}
    for line in p.stdout.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            out[r["batch"]] = r
    return out


def torch_model(bundle, dev):
    import torch

    acts = {
        "relu": torch.nn.ReLU, "gelu": torch.nn.GELU, "tanh": torch.nn.Tanh,
        "sigmoid": torch.nn.Sigmoid, "identity": torch.nn.Identity,
    }
    mods = []
    n = len(bundle["weights"])
    for i, (w, b) in enumerate(bundle["weights"]):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        mods.append(lin)
        if i + 1 < n:
            mods.append(acts[bundle["activation"]]())
    model = torch.nn.Sequential(*mods).to(dev).eval()
    shift = scale = None
    if bundle["shift"] is not None:
        shift = torch.from_numpy(bundle["shift"]).to(dev)
        scale = torch.from_numpy(bundle["scale"]).to(dev)
    classify = bundle["task"] == "classification"

    def forward(x):
        if shift is not None:
            x = (x - shift) * scale
        y = model(x)
        return torch.softmax(y, dim=1) if classify else y

    return forward


def time_calls(fn, args):
    """Median, p10, p90 (microseconds) and reps of fn() after warm-up, as infer_bench times."""
    for _ in range(args.warmup):
        fn()
    times, total = [], 0.0
    while len(times) < args.max_reps:
        t0 = time.perf_counter()
        fn()
        t = (time.perf_counter() - t0) * 1e6
        times.append(t)
        total += t
        if len(times) >= args.min_reps and total >= args.min_ms * 1e3:
            break
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) > 1 else times * 9
    return {"median_us": statistics.median(times), "p10_us": q[0], "p90_us": q[-1],
            "reps": len(times)}


def run_torch(args, bundle, x_np, dev):
    import torch

    forward = torch_model(bundle, dev)
    x_host = torch.from_numpy(x_np)  # pageable host memory, as the server's rows
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    eager, graph, outs = {}, {}, {}
    with torch.inference_mode():

        def eager_call(b):
            return forward(x_host[:b].to(dev)).cpu()

        for b in batch_sizes(args.max_batch):
            eager[b] = time_calls(lambda: eager_call(b), args)
            log(f"  torch eager  batch {b:5d}: {eager[b]['median_us']:10.1f} us")
        outs["eager"] = eager_call(args.max_batch).numpy()

        if dev.type == "cuda" and not args.no_graphs:
            for b in batch_sizes(args.max_batch):
                static_x = torch.zeros((b, x_np.shape[1]), device=dev)
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    for _ in range(3):
                        forward(static_x)
                torch.cuda.current_stream().wait_stream(s)
                g = torch.cuda.CUDAGraph()
                with torch.cuda.graph(g):
                    static_y = forward(static_x)
                sync()

                def graph_call(b=b, g=g, static_x=static_x, static_y=static_y):
                    static_x.copy_(x_host[:b])
                    g.replay()
                    return static_y.cpu()

                graph[b] = time_calls(graph_call, args)
                log(f"  torch graph  batch {b:5d}: {graph[b]['median_us']:10.1f} us")
                if b == args.max_batch:
                    outs["graph"] = graph_call().numpy()
                del g, static_x, static_y
    return eager, graph, outs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--driver", default="build-gpu/tests/infer_bench",
                    help="tests/tools/infer_bench from a kiln build")
    ap.add_argument("--bundle", required=True, help="a kiln model bundle (kiln train's output)")
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="CPU threads for both engines (default: all cores on --device cpu)")
    ap.add_argument("--max-batch", type=int, default=4096)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--min-reps", type=int, default=10)
    ap.add_argument("--min-ms", type=int, default=200)
    ap.add_argument("--max-reps", type=int, default=1000)
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs diff of the outputs")
    ap.add_argument("--no-graphs", action="store_true", help="skip the CUDA-graph variant")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--timeout-s", type=float, default=300, help="for the kiln driver's run")
    ap.add_argument("--json-out", help="writes every measurement here")
    ap.add_argument("--summary-file", help="writes a one-line summary here (for gpu-check)")
    args = ap.parse_args()

    import numpy as np
    import torch

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device(args.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            log(f"no CUDA device visible to torch {torch.__version__}: cannot run --device cuda")
            return 2
        name = torch.cuda.get_device_name(dev)
    else:
        if not args.threads:
            args.threads = os.cpu_count() or 1
        torch.set_num_threads(args.threads)
        name = f"CPU, {args.threads} threads"
    log(f"kiln batched inference vs PyTorch {torch.__version__} on {args.device} ({name})")

    bundle = load_bundle(args.bundle)
    layers = "-".join(map(str, bundle["layers"]))
    log(f"bundle {args.bundle}: {layers} {bundle['activation']} {bundle['task']}, "
        f"transform {'none' if bundle['shift'] is None else 'affine (shift, scale)'}")
    x = make_inputs(bundle, args.max_batch, args.seed)

    ok = True
    with tempfile.TemporaryDirectory(prefix="kiln-infer-") as tmp:
        xin, yout = os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.f32")
        x.tofile(xin)
        t = time.perf_counter()
        kiln = run_kiln(args, args.bundle, xin, yout)
        log(f"kiln driver: {time.perf_counter() - t:.1f}s")
        y_kiln = np.fromfile(yout, dtype=np.float32).reshape(args.max_batch, -1)
    t = time.perf_counter()
    eager, graph, outs = run_torch(args, bundle, x, dev)
    log(f"PyTorch: {time.perf_counter() - t:.1f}s")

    log()
    log("median microseconds per call (host rows in, host outputs out); ratio = kiln / PyTorch")
    head = f"{'batch':>6} {'kiln':>10} {'eager':>10} {'kiln/eager':>10}"
    if graph:
        head += f" {'graph':>10} {'kiln/graph':>10}"
    head += f" {'kiln rows/s':>12}"
    log(head)
    rows = []
    for b in batch_sizes(args.max_batch):
        k = kiln.get(b)
        if k is None:
            log(f"{b:>6} kiln printed no timing")
            ok = False
            continue
        e = eager[b]["median_us"]
        line = f"{b:>6} {k['median_us']:>10.1f} {e:>10.1f} {k['median_us'] / e:>10.2f}"
        r = {"batch": b, "kiln": k, "torch_eager": eager[b]}
        if graph:
            gm = graph[b]["median_us"]
            line += f" {gm:>10.1f} {k['median_us'] / gm:>10.2f}"
            r["torch_graph"] = graph[b]
        line += f" {k['rows_per_s']:>12.0f}"
        log(line)
        rows.append(r)

    log()
    checks = {}
    for variant, y in outs.items():
        d = float(np.max(np.abs(y - y_kiln)))
        checks[variant] = d
        good = d <= args.tol
        ok &= good
        log(f"outputs, {args.max_batch} rows, kiln vs PyTorch {variant}: max abs diff {d:.3g} "
            f"({'OK' if good else 'FAIL'}: tolerance {args.tol:g})")
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"device": args.device, "name": name, "bundle": args.bundle,
                       "layers": layers, "rows": rows, "max_abs_diff": checks}, f, indent=1)
    if args.summary_file:
        picks = sorted({1, 64, args.max_batch} & {r["batch"] for r in rows})
        parts = []
        for key, label in (("torch_eager", "eager"), ("torch_graph", "graph")):
            got = [r for r in rows if r["batch"] in picks and key in r]
            if got:
                ratios = " ".join(
                    f"b{r['batch']} {r['kiln']['median_us'] / r[key]['median_us']:.2f}"
                    for r in got)
                parts.append(f"kiln/{label} time {ratios}")
        diff = max(checks.values()) if checks else float("nan")
        parts.append(f"max abs diff {diff:.2g} ({'OK' if ok else 'FAIL'})")
        with open(args.summary_file, "w") as f:
            f.write(f"{args.device}: " + "; ".join(parts) + "\n")
    log(f"total {time.perf_counter() - T0:.1f}s: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
