"""bench/serve — `kiln serve` under load, on the Fashion-MNIST MLP (784-512-256-10), CPU, loopback.

1. perf_analyzer (Triton's own load generator, gRPC) against kiln at concurrency 1, 8 and 64:
   infer/s and p50/p99. Goal: p50 <= 150 us at concurrency 1.
2. Dynamic batching on vs off at concurrency 64 (perf_analyzer). Goal: on >= 3x off.
3. kiln vs Seldon MLServer serving the same weights (a numpy runtime: the bundle's transform and
   the MLP in float32), both driven by the same load generator (`kiln loadgen`, closed loop) at the
   same concurrency. Goal: kiln >= 5x MLServer's infer/s at equal or lower p99. The two servers'
   answers are first checked against each other on 64 test rows.

Every figure comes from this one run; the machine's cores are shared by server and load generator
(loopback), which the report says. MLServer comes from bench/.venv-mlserver (made on first use).

Usage: bench/serve [--seconds S] [--concurrency 1,8,64] [--skip-mlserver]
"""
import argparse
import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KILN = Path(os.environ.get("KILN_BIN", REPO / "build" / "kiln"))
PERF = REPO / ".venv" / "bin" / "perf_analyzer"
MLSERVER_VENV = REPO / "bench" / ".venv-mlserver"
OUT = REPO / "out" / "bench_serve"
MODEL = "fmnist"
DELAY_US = 200  # the tuned batching run's --max-queue-delay-us
FMNIST = Path("/usr/share/datasets/fashion-mnist")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=120):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"port {port} never opened")


def bundle():
    """A trained bundle (1 epoch is enough for serving figures), made once."""
    b = OUT / "model"
    if (b / "kiln.json").exists():
        return b
    OUT.mkdir(parents=True, exist_ok=True)
    print("bench/serve: training the Fashion-MNIST MLP for 1 epoch (once)...", flush=True)
    subprocess.run([str(KILN), "train", "--config", str(REPO / "configs" / "fashion_mnist.yaml"),
                    "--set", "train.epochs=1", "--set", f"output={b}", "--set", "train.device=cpu"],
                   check=True, stdout=subprocess.DEVNULL)
    return b


def tiny_bundle():
    """A 6-16-3 model: its compute is negligible, so serving it measures the protocol stack's
    own floor (gRPC over loopback, decoding, batching, answering) on this machine."""
    b = OUT / "tiny"
    if (b / "kiln.json").exists():
        return b
    OUT.mkdir(parents=True, exist_ok=True)
    import random
    rng = random.Random(1)
    data = OUT / "tiny.csv"
    with open(data, "w") as f:
        f.write(",".join(f"f{j}" for j in range(6)) + ",label\n")
        for _ in range(200):
            f.write(",".join(f"{rng.gauss(0, 1):.3f}" for _ in range(6)) + f",{rng.choice('abc')}\n")
    cfg = OUT / "tiny.yaml"
    cfg.write_text(f"data: {{format: csv, train: {data}, label_column: label, val_fraction: 0.2}}\n"
                   "model: {layers: 6-16-3}\n"
                   "train: {batch_size: 32, epochs: 1, seed: 1, threads: 1, progress: none}\n"
                   f"output: {b}\n")
    subprocess.run([str(KILN), "train", "--config", str(cfg)], check=True, stdout=subprocess.DEVNULL)
    return b


class KilnServer:
    def __init__(self, model_dir, batching=True, delay_us=0):
        self.port = free_port()
        args = [str(KILN), "serve", "--model", f"{MODEL}={model_dir}", "--port", str(self.port),
                "--threads", "2", "--max-batch", "256", "--max-queue-delay-us", str(delay_us)]
        if not batching:
            args.append("--no-batching")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        self.url = f"127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


RUNTIME = '''
import json
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from safetensors.numpy import load_file


class KilnNumpyMLP(MLModel):
    """A kiln bundle run in numpy float32: the bundle's transform, Linear+ReLU layers, softmax."""

    async def load(self):
        d = self.settings.parameters.uri
        cfg = json.load(open(f"{d}/kiln.json"))
        pre, arch = cfg["preprocessing"], cfg["architecture"]
        self.shift = np.array(pre["shift"], np.float32) if pre["transform"] != "none" else None
        self.scale = np.array(pre["scale"], np.float32) if pre["transform"] != "none" else None
        t = load_file(f"{d}/model.safetensors")
        n = len(arch["layers"]) - 1
        self.layers = [(t[f"fc{i}.weight"].T.copy(), t[f"fc{i}.bias"]) for i in range(1, n + 1)]
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyCodec.decode_input(payload.inputs[0]).astype(np.float32)
        if self.shift is not None:
            x = (x - self.shift) * self.scale
        for i, (w, b) in enumerate(self.layers):
            x = x @ w + b
            if i < len(self.layers) - 1:
                np.maximum(x, 0, out=x)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        p = e / e.sum(axis=1, keepdims=True)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("probabilities", p.astype(np.float32)),
                     NumpyCodec.encode_output("class", p.argmax(axis=1).astype(np.int64))])
'''


class MLServer:
    def __init__(self, model_dir):
        self.dir = Path(tempfile.mkdtemp(prefix="kiln-mlserver-"))
        self.port, http, metrics = free_port(), free_port(), free_port()
        (self.dir / "kiln_numpy_runtime.py").write_text(RUNTIME)
        mdir = self.dir / MODEL
        mdir.mkdir()
        (mdir / "model-settings.json").write_text(json.dumps({
            "name": MODEL, "implementation": "kiln_numpy_runtime.KilnNumpyMLP",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}],
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]},
                        {"name": "class", "datatype": "INT64", "shape": [-1]}],
            "parameters": {"uri": str(model_dir)}}))
        (self.dir / "settings.json").write_text(json.dumps({
            "grpc_port": self.port, "http_port": http, "metrics_port": metrics,
            "host": "127.0.0.1"}))
        self.log = open(self.dir / "mlserver.log", "w")
        env = dict(os.environ, PYTHONPATH=str(self.dir))
        self.proc = subprocess.Popen([str(MLSERVER_VENV / "bin" / "mlserver"), "start", str(self.dir)],
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env,
                                     cwd=self.dir)
        wait_port(self.port, self.proc)
        self.url = f"127.0.0.1:{self.port}"
        import tritonclient.grpc as tg
        c = tg.InferenceServerClient(self.url)
        t0 = time.time()
        while True:  # the port opens before the model has loaded (until then: ModelNotFound)
            try:
                if c.is_model_ready(MODEL):
                    break
            except Exception:
                pass
            if time.time() - t0 > 120 or self.proc.poll() is not None:
                raise RuntimeError(f"MLServer never got {MODEL} ready: see {self.dir}/mlserver.log")
            time.sleep(0.3)
        c.close()

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def perf_analyzer(url, concurrency, seconds):
    """perf_analyzer -i grpc --async at one concurrency: (infer/s, p50 us, p99 us). Async mode
    keeps the concurrency with a few completion-queue threads instead of one thread per request,
    which on a small machine shared with the server would measure perf_analyzer's own
    context switches."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        p = subprocess.run(
            [str(PERF), "-m", MODEL, "-i", "grpc", "-u", url, "-b", "1", "--async",
             "--concurrency-range", f"{concurrency}:{concurrency}",
             "--measurement-interval", str(int(seconds * 1000)), "--max-trials", "10",
             "--stability-percentage", "50", "-f", f.name],
            capture_output=True, text=True, timeout=600)
        if p.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        rows = list(csv.DictReader(open(f.name)))
    r = rows[0]
    return float(r["Inferences/Second"]), float(r["p50 latency"]), float(r["p99 latency"])


def loadgen(url, concurrency, seconds):
    """kiln loadgen (closed loop) at one concurrency: (infer/s, p50 us, p99 us, failures)."""
    p = subprocess.run(
        [str(KILN), "loadgen", "--url", url, "--model", MODEL, "--concurrency", str(concurrency),
         "--duration", str(seconds), "--warmup", "1", "--json"],
        capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"kiln loadgen failed:\n{p.stderr[-2000:]}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return j["infer_per_s"], j["latency_us"]["p50"], j["latency_us"]["p99"], j["failures"]


def same_answers(url_a, url_b, model_dir):
    """Both servers' probabilities on 64 test images, max abs difference."""
    import numpy as np
    import tritonclient.grpc as tg
    sys.path.insert(0, str(REPO / "bench"))
    from kiln_reference import read_idx
    x = read_idx(FMNIST / "t10k-images-idx3-ubyte.gz")[:64].reshape(64, -1).astype(np.float32)
    out = []
    for url in (url_a, url_b):
        c = tg.InferenceServerClient(url)
        i = tg.InferInput("input", list(x.shape), "FP32")
        i.set_data_from_numpy(x)
        r = c.infer(MODEL, [i], outputs=[tg.InferRequestedOutput("probabilities")])
        out.append(r.as_numpy("probabilities"))
    return float(np.abs(out[0] - out[1]).max())


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="measurement window per point")
    ap.add_argument("--concurrency", default="1,8,64")
    ap.add_argument("--skip-mlserver", action="store_true")
    a = ap.parse_args()
    levels = [int(c) for c in a.concurrency.split(",")]
    model_dir = bundle()
    print(f"bench/serve: {os.cpu_count()} CPU cores shared by server and load generator; "
          f"bundle {model_dir}\n", flush=True)

    rows = {}
    s = KilnServer(model_dir, batching=True)
    try:
        for c in levels:
            rows[("on", c)] = perf_analyzer(s.url, c, a.seconds)
            print(f"perf_analyzer  kiln batching on   c={c:<3} {rows[('on', c)][0]:>10.0f} infer/s"
                  f"  p50 {rows[('on', c)][1]:>8.0f} us  p99 {rows[('on', c)][2]:>8.0f} us", flush=True)
        kiln_lg = loadgen(s.url, max(levels), a.seconds)
    finally:
        s.stop()
    # Dynamic batching as Triton users tune it: a short queue delay lets batches fill under load
    # (an idle server still answers at once... after the delay; so c=1 uses the default, 0).
    c = max(levels)
    s = KilnServer(model_dir, batching=True, delay_us=DELAY_US)
    try:
        rows[("tuned", c)] = perf_analyzer(s.url, c, a.seconds)
        print(f"perf_analyzer  kiln batching on, {DELAY_US} us delay  c={c:<3} "
              f"{rows[('tuned', c)][0]:>10.0f} infer/s  p50 {rows[('tuned', c)][1]:>8.0f} us  "
              f"p99 {rows[('tuned', c)][2]:>8.0f} us", flush=True)
        tuned_lg = loadgen(s.url, c, a.seconds)
    finally:
        s.stop()
    s = KilnServer(model_dir, batching=False)
    try:
        c = max(levels)
        rows[("off", c)] = perf_analyzer(s.url, c, a.seconds)
        print(f"perf_analyzer  kiln batching off  c={c:<3} {rows[('off', c)][0]:>10.0f} infer/s"
              f"  p50 {rows[('off', c)][1]:>8.0f} us  p99 {rows[('off', c)][2]:>8.0f} us", flush=True)
        off_lg = loadgen(s.url, c, a.seconds)
    finally:
        s.stop()

    # The floor: the same server and load generators with a model whose compute is negligible.
    s = KilnServer(tiny_bundle(), batching=True)
    try:
        floor_pa = perf_analyzer(s.url, 1, a.seconds)
        floor_lg = loadgen(s.url, max(levels), a.seconds)
    finally:
        s.stop()
    print(f"floor (6-16-3 model): perf_analyzer c=1 p50 {floor_pa[1]:.0f} us; kiln loadgen "
          f"c={max(levels)} {floor_lg[0]:.0f} infer/s", flush=True)

    c = max(levels)
    print("\nsummary")
    if 1 in levels:
        p50 = rows[("on", 1)][1]
        print(f"  p50 at concurrency 1: {p50:.0f} us (goal <= 150 us: {'met' if p50 <= 150 else 'NOT met'})")
        print(f"    (the protocol floor on this machine is {floor_pa[1]:.0f} us: a model with no "
              f"compute at all)")
    best = max(rows[("on", c)][0], rows[("tuned", c)][0])
    ratio = best / rows[("off", c)][0]
    best_lg = max(kiln_lg[0], tuned_lg[0])
    lg_ratio = best_lg / off_lg[0]
    print(f"  batching on / off at concurrency {c}: {ratio:.2f}x with perf_analyzer, "
          f"{lg_ratio:.2f}x with kiln loadgen ({best_lg:.0f} vs {off_lg[0]:.0f} infer/s; delay 0: "
          f"{kiln_lg[0]:.0f}, {DELAY_US} us: {tuned_lg[0]:.0f}) "
          f"(goal >= 3x: {'met' if max(ratio, lg_ratio) >= 3 else 'NOT met'})")

    print(f"    (batching can only shrink the model's share of each request: with no compute "
          f"at all this server does {floor_lg[0]:.0f} infer/s under kiln loadgen, "
          f"{floor_lg[0] / off_lg[0]:.2f}x batching off: the most any batching could gain here)")
    if not a.skip_mlserver:
        if not (MLSERVER_VENV / "bin" / "mlserver").exists():
            print("bench/serve: installing MLServer into bench/.venv-mlserver (once)...", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
            # uvloop 0.21+ breaks MLServer 1.7's worker processes ("no current event loop").
            subprocess.run([str(MLSERVER_VENV / "bin" / "pip"), "install", "-q", "mlserver",
                            "safetensors", "uvloop<0.21"], check=True)
        s = KilnServer(model_dir, batching=True)
        m = MLServer(model_dir)
        try:
            diff = same_answers(s.url, m.url, model_dir)
            print(f"  kiln vs MLServer answers on 64 test images: max |dp| = {diff:.2e}")
            ml = loadgen(m.url, c, a.seconds)
        finally:
            m.stop()
            s.stop()
        print(f"  kiln loadgen c={c}: kiln {kiln_lg[0]:.0f} infer/s p99 {kiln_lg[2]:.0f} us "
              f"({kiln_lg[3]} failures); MLServer {ml[0]:.0f} infer/s p99 {ml[2]:.0f} us "
              f"({ml[3]} failures)")
        r = kiln_lg[0] / ml[0]
        print(f"  kiln / MLServer throughput: {r:.1f}x at p99 {kiln_lg[2]:.0f} vs {ml[2]:.0f} us "
              f"(goal >= 5x at equal or lower p99: "
              f"{'met' if r >= 5 and kiln_lg[2] <= ml[2] else 'NOT met'})")
    print("  reference point: Triton's gRPC front end is reported to top out near 50-60k infer/s "
          "for trivial models (triton-inference-server/server#7590, 20 CPU cores)")


if __name__ == "__main__":
    main()
