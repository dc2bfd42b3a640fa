"""bench/monitoring — `kiln serve` throughput with monitoring on vs off, in one run.

The Fashion-MNIST MLP (784-512-256-10, CPU, loopback) served by two configurations, alternated
off, on, off, on, ... (--rounds of each, a fresh server every time) so that the machine's drift
lands on both arms alike:
  off  the model only, with --http-port (so /metrics exists)
  on   the same plus --prediction-log DIR (rotating JSONL, every request: sample rate 1),
       --drift-window 1000 --drift-interval 10 (kiln's defaults: live drift gauges against the bundle's reference
       profile) and --alerts RULES.yaml (three rules evaluated every second) when this kiln has it
Both arms have /metrics scraped once a second from a thread of this script. Each round drives
the server with perf_analyzer (gRPC, --async) at each --concurrency and with `kiln loadgen` at the
largest one, all sending Fashion-MNIST test images (what a production log would hold), for
--seconds per measurement window. Prints each measurement, the medians per arm (infer/s, p50,
p99), on/off and the cost in %. Goal: monitoring costs <= 5% throughput.

The prediction log is asynchronous: when its writer falls behind, records are dropped and counted
(kiln_prediction_log_dropped_total) rather than slowing requests. Drops make "on" cheaper than
logging everything would be, so the records written and dropped are read from /metrics and
reported beside the figures.

Server and load generator share the machine's cores (loopback), which the report says.

Usage: bench/monitoring [--seconds 5] [--rounds 3] [--concurrency 16,64] [--no-loadgen]
                        [--sample 1] [--drift-interval 10] [--breakdown]
"""
import argparse
import csv
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kiln_reference import read_idx  # noqa: E402  IDX reader (the test images)
from serve import free_port, wait_port  # noqa: E402  loopback port helpers of bench/serve

REPO = Path(__file__).resolve().parents[1]
KILN = Path(os.environ.get("KILN_BIN", REPO / "build" / "kiln"))
PERF = REPO / ".venv" / "bin" / "perf_analyzer"
OUT = REPO / "out" / "bench_monitoring"
MODEL = "fmnist"
FMNIST = Path("/usr/share/datasets/fashion-mnist")
TEST_IMAGES = FMNIST / "t10k-images-idx3-ubyte.gz"
GOAL_PCT = 5.0

ALERT_RULES = """\
interval: 1s
rules:
  - name: InputDrift
    metric: kiln_drift_psi_max
    comparison: ">"
    threshold: 0.25
    for: 1m
    severity: warning
  - name: SlowRequests
    metric: kiln_inference_request_duration_seconds
    comparison: ">"
    threshold: 1
    quantile: 0.99
    window: 1m
    for: 1m
    severity: critical
  - name: PredictionLogDrops
    metric: kiln_prediction_log_dropped_total
    comparison: ">"
    threshold: 1000000
    window: 1m
    for: 1m
    severity: info
"""


def bundle():
    """A trained bundle with a reference profile (drift needs one), made once. bench/serve's
    bundle may predate profiles, so this one is its own: same config, 1 epoch."""
    b = OUT / "model"
    kj = b / "kiln.json"
    if kj.exists() and "reference" in json.loads(kj.read_text()):
        return b
    OUT.mkdir(parents=True, exist_ok=True)
    print("bench/monitoring: training the Fashion-MNIST MLP for 1 epoch (once)...", flush=True)
    subprocess.run([str(KILN), "train", "--config", str(REPO / "configs" / "fashion_mnist.yaml"),
                    "--set", "train.epochs=1", "--set", f"output={b}", "--set", "train.device=cpu"],
                   check=True, stdout=subprocess.DEVNULL)
    if "reference" not in json.loads(kj.read_text()):
        sys.exit(f"bench/monitoring: {b} has no reference profile: drift cannot run")
    return b


def pa_input(n=1000):
    """perf_analyzer's --input-data: the first n test images, one request each."""
    path = OUT / "pa_input.json"
    if not path.exists():
        x = read_idx(TEST_IMAGES)[:n].reshape(n, -1)
        path.write_text(json.dumps({"data": [{"input": {"content": [float(v) for v in r],
                                                        "shape": [x.shape[1]]}} for r in x]}))
    return path


def alerts_supported():
    p = subprocess.run([str(KILN), "serve", "--help"], capture_output=True, text=True)
    return "--alerts" in p.stdout + p.stderr


METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def metric_sum(text, name):
    """Sum over all series of one family on a Prometheus text page (0 when absent)."""
    total = 0.0
    for line in text.splitlines():
        m = METRIC_RE.match(line)
        if m and m.group(1) == name:
            total += float(m.group(3))
    return total


class Server:
    """kiln serve with or without monitoring; /metrics scraped once a second while it runs."""

    def __init__(self, model_dir, parts, alerts_file, sample, drift_interval):
        self.port, self.http = free_port(), free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="kiln-bench-monitoring-"))
        args = [str(KILN), "serve", "--model", f"{MODEL}={model_dir}", "--port", str(self.port),
                "--http-port", str(self.http), "--threads", "2", "--max-batch", "256",
                "--max-queue-delay-us", "0"]
        if "log" in parts:
            args += ["--prediction-log", str(self.dir / "log"), "--prediction-log-sample",
                     str(sample)]
        if "drift" in parts:
            args += ["--drift-window", "1000", "--drift-interval", f"{drift_interval:g}"]
        if "alerts" in parts and alerts_file:
            args += ["--alerts", str(alerts_file)]
        self.log = open(self.dir / "serve.log", "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_port(self.port, self.proc)
            wait_port(self.http, self.proc)
        except RuntimeError:
            self.log.close()
            sys.exit(f"bench/monitoring: kiln serve did not start:\n"
                     f"{(self.dir / 'serve.log').read_text()[-2000:]}")
        self.url = f"127.0.0.1:{self.port}"
        self.page, self.scrapes, self.scrape_errors = "", 0, 0
        self.stopping = threading.Event()
        self.scraper = threading.Thread(target=self._scrape_loop, daemon=True)
        self.scraper.start()

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http}/metrics", timeout=5) as r:
            return r.read().decode()

    def _scrape_loop(self):
        while not self.stopping.wait(1.0):
            try:
                self.page = self.metrics()
                self.scrapes += 1
            except OSError:
                self.scrape_errors += 1

    def cpu_s(self):
        """CPU seconds (user + system, all threads) the server has used so far."""
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def counters(self):
        """(requests answered, log records written, log records dropped) now."""
        t = self.metrics()
        return (metric_sum(t, "kiln_inference_requests_success_total"),
                metric_sum(t, "kiln_prediction_log_records_total"),
                metric_sum(t, "kiln_prediction_log_dropped_total"))

    def drain(self, timeout=60):
        """Waits until the log writer has written everything accepted (records + dropped reach
        the requests answered), so one measurement's backlog does not load the next."""
        t0, last, still = time.time(), -1, 0
        while time.time() - t0 < timeout:
            req, rec, drop = self.counters()
            still = still + 1 if rec + drop == last else 0
            last = rec + drop
            if rec + drop >= req or still >= 5:  # all written, or (sampled) 1 s with no progress
                return time.time() - t0
            time.sleep(0.2)
        return time.time() - t0

    def stop(self):
        self.stopping.set()
        self.scraper.join()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def perf_analyzer(url, concurrency, seconds, input_data):
    """perf_analyzer -i grpc --async at one concurrency, sending the test images:
    (infer/s, p50 us, p99 us). As in bench/serve: async mode, stable over 3 windows."""
    with tempfile.NamedTemporaryFile(suffix=".csv") as f:
        p = subprocess.run(
            [str(PERF), "-m", MODEL, "-i", "grpc", "-u", url, "-b", "1", "--async",
             "--concurrency-range", f"{concurrency}:{concurrency}", "--input-data",
             str(input_data), "--measurement-interval", str(int(seconds * 1000)),
             "--max-trials", "10", "--stability-percentage", "50", "-f", f.name],
            capture_output=True, text=True, timeout=900)
        if p.returncode != 0:
            raise RuntimeError(f"perf_analyzer failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        r = list(csv.DictReader(open(f.name)))[0]
    return float(r["Inferences/Second"]), float(r["p50 latency"]), float(r["p99 latency"]), 0


def loadgen(url, concurrency, seconds):
    """kiln loadgen (closed loop) on the test images: (infer/s, p50 us, p99 us, failures)."""
    p = subprocess.run(
        [str(KILN), "loadgen", "--url", url, "--model", MODEL, "--concurrency", str(concurrency),
         "--duration", str(seconds), "--warmup", "1", "--input", str(TEST_IMAGES), "--json"],
        capture_output=True, text=True, timeout=900)
    if p.returncode != 0:
        raise RuntimeError(f"kiln loadgen failed:\n{p.stderr[-2000:]}")
    j = json.loads(p.stdout.strip().splitlines()[-1])
    return j["infer_per_s"], j["latency_us"]["p50"], j["latency_us"]["p99"], j["failures"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0,
                    help="measurement window (perf_analyzer: per window, >= 3 windows; "
                         "kiln loadgen: the whole measurement)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of off, on")
    ap.add_argument("--concurrency", default="16,64", help="perf_analyzer concurrencies")
    ap.add_argument("--no-loadgen", action="store_true", help="skip kiln loadgen")
    ap.add_argument("--breakdown", action="store_true",
                    help="also alternate arms with each part alone: log, drift, alerts")
    ap.add_argument("--drift-interval", type=float, default=10.0,
                    help="the on arm's --drift-interval (kiln serve's default: 10 s)")
    ap.add_argument("--sample", type=float, default=1.0,
                    help="--prediction-log-sample of the on arm (default 1: every request)")
    a = ap.parse_args()
    if a.seconds < 5 or a.rounds < 3:
        print("bench/monitoring: note: below 5 s windows or 3 rounds the figures are noise",
              flush=True)
    levels = [int(c) for c in a.concurrency.split(",")]
    loads = [("perf_analyzer", c) for c in levels]
    if not a.no_loadgen:
        loads.append(("kiln loadgen", max(levels)))

    model_dir = bundle()
    input_data = pa_input()
    alerts_file = None
    if alerts_supported():
        alerts_file = OUT / "alerts.yaml"
        alerts_file.write_text(ALERT_RULES)
        alerts_note = f"--alerts {alerts_file} (3 rules, evaluated every 1 s)"
    else:
        alerts_note = "no --alerts: this kiln serve does not have the option (skipped)"
    arms = {"off": (), "on": ("log", "drift", "alerts")}
    if a.breakdown:
        arms.update({"log": ("log",), "drift": ("drift",)})
        if alerts_file:
            arms["alerts"] = ("alerts",)
    print(f"bench/monitoring: {os.cpu_count()} CPU cores shared by server, load generator and "
          f"scraper (loopback); bundle {model_dir}\n"
          f"  off: --http-port only; on: --prediction-log DIR --prediction-log-sample {a.sample:g} "
          f"--drift-window 1000 --drift-interval {a.drift_interval:g}, {alerts_note}\n"
          f"{'  log, drift, alerts: each of those alone' + chr(10) if a.breakdown else ''}"
          f"  all arms: /metrics scraped every 1 s; {a.rounds} rounds of "
          f"{', '.join(arms)}; "
          f"{a.seconds:g} s windows\n", flush=True)

    res = {(arm, ld): [] for arm in arms for ld in loads}
    cpu = {(arm, ld): [] for arm in arms for ld in loads}  # server CPU us per request
    logstat = {}  # arm -> per server: (answered, written, dropped, drain seconds)
    per_load_drops = {ld: [] for ld in loads}  # on arm: (answered, dropped) during the load
    for rnd in range(1, a.rounds + 1):
        for arm, parts in arms.items():
            s = Server(model_dir, parts, alerts_file, a.sample, a.drift_interval)
            try:
                for ld in loads:
                    req0, _, drop0 = s.counters()
                    cpu0 = s.cpu_s()
                    if ld[0] == "perf_analyzer":
                        r = perf_analyzer(s.url, ld[1], a.seconds, input_data)
                    else:
                        r = loadgen(s.url, ld[1], a.seconds)
                    req1, _, drop1 = s.counters()
                    res[(arm, ld)].append(r)
                    extra = ""
                    if "log" in parts:
                        if arm == "on":
                            per_load_drops[ld].append((req1 - req0, drop1 - drop0))
                        extra = (f"  log dropped {drop1 - drop0:.0f} of {req1 - req0:.0f} "
                                 f"({100 * (drop1 - drop0) / max(req1 - req0, 1):.1f}%)")
                        s.drain()  # the writer's backlog is this load's work: before cpu1
                    cpu_us = 1e6 * (s.cpu_s() - cpu0) / max(req1 - req0, 1)
                    cpu[(arm, ld)].append(cpu_us)
                    fails = f"  {r[3]} failures" if r[3] else ""
                    print(f"round {rnd} {arm:<6} {ld[0]:<13} c={ld[1]:<3} {r[0]:>8.0f} infer/s"
                          f"  p50 {r[1]:>7.0f} us  p99 {r[2]:>7.0f} us  server {cpu_us:>4.0f} "
                          f"CPU-us/req{fails}{extra}", flush=True)
                if "log" in parts:
                    drain_s = s.drain()
                    req, rec, drop = s.counters()
                    logstat.setdefault(arm, []).append((req, rec, drop, drain_s))
                if s.scrapes == 0:
                    print(f"  warning: /metrics never scraped ({s.scrape_errors} errors)")
            finally:
                s.stop()

    print("\nsummary (medians over rounds; on/off of the medians, and the range of the "
          "per-round on/off)")
    verdicts = []
    for ld in loads:
        off, on = res[("off", ld)], res[("on", ld)]
        m = [statistics.median(x[i] for x in arm) for arm in (off, on) for i in range(3)]
        ratio = m[3] / m[0]
        paired = [o[0] / f[0] for f, o in zip(off, on)]
        cost = (1 - ratio) * 100
        verdicts.append(cost)
        print(f"  {ld[0]:<13} c={ld[1]:<3} off {m[0]:>7.0f} infer/s (p50 {m[1]:.0f} us, p99 "
              f"{m[2]:.0f} us)  on {m[3]:>7.0f} infer/s (p50 {m[4]:.0f} us, p99 {m[5]:.0f} us)")
        print(f"  {'':<13}       on/off {ratio:.3f}: cost {cost:+.1f}% (per round "
              f"{min(paired):.3f}..{max(paired):.3f}) "
              f"(goal <= {GOAL_PCT:g}%: {'met' if cost <= GOAL_PCT else 'NOT met'})")
        c_off, c_on = (statistics.median(cpu[(arm, ld)]) for arm in ("off", "on"))
        print(f"  {'':<13}       server CPU per request: off {c_off:.0f} us, on {c_on:.0f} us "
              f"({c_on / c_off:.2f}x)")
        ans = sum(x[0] for x in per_load_drops[ld])
        dr = sum(x[1] for x in per_load_drops[ld])
        print(f"  {'':<13}       prediction log under this load: {dr:.0f} of {ans:.0f} records "
              f"dropped ({100 * dr / max(ans, 1):.1f}%)")
    if a.breakdown:
        print("  each part alone (throughput /off of the medians, and server CPU per request "
              "/off; the parts' costs need not add up):")
        for ld in loads:
            off = statistics.median(x[0] for x in res[("off", ld)])
            c_off = statistics.median(cpu[("off", ld)])
            parts = "  ".join(
                f"{arm} {statistics.median(x[0] for x in res[(arm, ld)]) / off:.3f} "
                f"(CPU/req {statistics.median(cpu[(arm, ld)]) / c_off:.2f}x)"
                for arm in arms if arm != "off")
            print(f"    {ld[0]:<13} c={ld[1]:<3} {parts}")
    for arm, st in logstat.items():
        ans, rec, drop = (sum(x[i] for x in st) for i in range(3))
        print(f"  prediction log, all {arm}-rounds: {ans:.0f} requests answered, {rec:.0f} "
              f"records written (kiln_prediction_log_records_total), {drop:.0f} dropped "
              f"(kiln_prediction_log_dropped_total, {100 * drop / max(ans, 1):.1f}%); longest "
              f"drain after the load stopped {max(x[3] for x in st):.1f} s")
    drop = sum(x[2] for x in logstat["on"])
    if drop:
        print("    the log did NOT keep up: dropped records are work the on arm did not do, so its "
              "cost here is a lower bound on what logging every request costs at this rate")
    else:
        print("    the log kept up: every request was written")
    print(f"  worst cost over the loads: {max(verdicts):+.1f}% (goal <= {GOAL_PCT:g}%: "
          f"{'met' if max(verdicts) <= GOAL_PCT else 'NOT met'})")
    print(f"  note: server, load generator and scraper share {os.cpu_count()} cores, so the "
          f"monitoring threads (log writer, drift, alerts) compete with both the server and the "
          f"load generator for CPU")


if __name__ == "__main__":
    main()
