"""`kiln serve` operations against real clients: Triton's perf_analyzer, tritonclient.grpc, and a
real MLflow registry.

- perf_analyzer -i grpc runs against kiln without errors;
- a model repository folder (Triton's layout): a new version dropped in while requests flow is
  loaded and swapped in with zero failed requests; a broken version is reported by
  RepositoryIndex and the old one keeps serving; explicit Load/Unload;
- canary: the challenger's share of 2000 requests is within 3 points of the setting, and a
  request id always lands on the same version; shadow: every answer comes from the champion while
  the challenger runs a copy of each request;
- blue-green: serving models:/NAME@champion from a real MLflow registry, moving the alias swaps
  the served version;
- SIGTERM with requests queued and in flight: every one of them is answered, exit code 0.
"""

import shutil
import signal
import subprocess
import threading
import time

import numpy as np
import pytest

from conftest import FEATURES, REPO, KilnServe, _free_port, run_kiln, train_classifier, write_dataset

tgrpc = pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient is not installed (pip install 'tritonclient[grpc]')"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

PERF = REPO / ".venv" / "bin" / "perf_analyzer"  # scripts/setup installs it


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Two bundles of the same shape with different weights, and some rows."""
    d = tmp_path_factory.mktemp("serving_ops")
    data = d / "data.csv"
    x = write_dataset(data)
    a = train_classifier(data, d / "a", seed=1, epochs=2)
    b = train_classifier(data, d / "b", seed=2, epochs=2)
    return a, b, x.astype(np.float32)


def infer(client, model, x, version="", request_id=""):
    i = tgrpc.InferInput("input", list(x.shape), "FP32")
    i.set_data_from_numpy(np.ascontiguousarray(x, np.float32))
    return client.infer(model, [i], model_version=version, request_id=request_id)


class Load:
    """Threads sending requests until stopped; counts answers by version and failures."""

    def __init__(self, addr, model, x, threads=4):
        self.addr, self.model, self.x = addr, model, x
        self.stop_flag = threading.Event()
        self.versions, self.failures, self.lock = {}, [], threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(k,)) for k in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, k):
        c = tgrpc.InferenceServerClient(self.addr)
        i = 0
        while not self.stop_flag.is_set():
            rows = self.x[(i * 7 + k) % 100:(i * 7 + k) % 100 + 1 + i % 3]
            try:
                r = infer(c, self.model, rows)
                v = r.get_response().model_version
                with self.lock:
                    self.versions[v] = self.versions.get(v, 0) + 1
            except InferenceServerException as e:
                with self.lock:
                    self.failures.append(str(e))
            i += 1
        c.close()

    def stop(self):
        self.stop_flag.set()
        for t in self.threads:
            t.join()
        return self.versions, self.failures


def test_perf_analyzer_runs_against_kiln(bundles):
    if not PERF.exists():
        pytest.skip(f"perf_analyzer not installed at {PERF} (scripts/setup installs it)")
    a, _, _ = bundles
    s = KilnServe("--model", f"iris={a}")
    try:
        p = subprocess.run(
            [str(PERF), "-m", "iris", "-i", "grpc", "-u", s.addr, "--concurrency-range", "4:4",
             "--measurement-interval", "1000", "--max-trials", "4",
             # this test checks correctness, not speed: any throughput counts as stable
             "--stability-percentage", "1000"],
            capture_output=True, text=True, timeout=300)
        print(p.stdout[-1500:])
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "Throughput:" in p.stdout and "infer/sec" in p.stdout
        assert "error" not in p.stdout.lower().replace("errors: 0", "")
    finally:
        assert s.stop() == 0


def test_repository_swap_under_load(bundles, tmp_path):
    a, b, x = bundles
    repo = tmp_path / "repo"
    shutil.copytree(a, repo / "iris" / "1")
    s = KilnServe("--repository", str(repo), "--poll-seconds", "0.2")
    c = tgrpc.InferenceServerClient(s.addr)
    try:
        assert c.is_model_ready("iris", "1")
        load = Load(s.addr, "iris", x)
        time.sleep(0.5)
        # Copy into a hidden folder, then rename: the poll never sees a half-written version.
        shutil.copytree(b, repo / "iris" / ".incoming")
        (repo / "iris" / ".incoming").rename(repo / "iris" / "2")
        deadline = time.time() + 30
        while time.time() < deadline and not c.is_model_ready("iris", "2"):
            time.sleep(0.1)
        time.sleep(0.5)
        versions, failures = load.stop()
        print("answers by version:", versions)
        assert failures == []
        assert versions.get("1", 0) > 0 and versions.get("2", 0) > 0
        assert not c.is_model_ready("iris", "1")  # latest policy: version 1 retired
        # The new version's answers are the new bundle's (kiln predict on the same rows).
        got = infer(c, "iris", x[:10]).as_numpy("probabilities")
        preds = tmp_path / "b.csv"
        np.savetxt(tmp_path / "rows.csv", x[:10], delimiter=",",
                   header=",".join(f"f{j}" for j in range(FEATURES)), comments="")
        run_kiln("predict", "--model", b, "--input", tmp_path / "rows.csv", "--output", preds)
        want = np.loadtxt(preds, delimiter=",", skiprows=1, usecols=range(2, 5))
        assert np.abs(got - want).max() <= 1e-6

        # A broken version 3: reported, and version 2 keeps serving.
        (repo / "iris" / "3").mkdir()
        (repo / "iris" / "3" / "kiln.json").write_text("{ not json")
        time.sleep(1.0)
        index = {(m.name, m.version): m for m in c.get_model_repository_index().models}
        print(index)
        assert index[("iris", "3")].state == "UNAVAILABLE"
        assert index[("iris", "3")].reason
        assert index[("iris", "2")].state == "READY"
        assert infer(c, "iris", x[:2]).get_response().model_version == "2"
        # Explicit unload and load.
        c.unload_model("iris")
        assert not c.is_model_ready("iris")
        with pytest.raises(InferenceServerException) as e:
            infer(c, "iris", x[:1])
        assert "iris" in str(e.value)
        c.load_model("iris")
        assert c.is_model_ready("iris", "2")
    finally:
        c.close()
        assert s.stop() == 0


def test_canary_share_and_stickiness(bundles, tmp_path):
    a, b, x = bundles
    repo = tmp_path / "repo"
    shutil.copytree(a, repo / "iris" / "1")
    shutil.copytree(b, repo / "iris" / "2")
    s = KilnServe("--repository", str(repo), "--canary", "iris=2:0.3")
    c = tgrpc.InferenceServerClient(s.addr)
    try:
        n2 = sum(infer(c, "iris", x[i % 100:i % 100 + 1]).get_response().model_version == "2"
                 for i in range(2000))
        share = n2 / 2000
        print(f"canary 0.3: {n2} of 2000 requests on version 2 ({share:.3f})")
        assert abs(share - 0.3) <= 0.03
        ids = 0
        for k in range(200):
            seen = {infer(c, "iris", x[:1], request_id=f"client-{k}").get_response().model_version
                    for _ in range(3)}
            assert len(seen) == 1
            ids += seen == {"2"}
        print(f"canary by request id: {ids} of 200 ids on version 2")
        assert 30 <= ids <= 90
        assert infer(c, "iris", x[:1], version="1").get_response().model_version == "1"
    finally:
        c.close()
        assert s.stop() == 0


def test_shadow_answers_from_champion_only(bundles, tmp_path):
    a, b, x = bundles
    repo = tmp_path / "repo"
    shutil.copytree(a, repo / "iris" / "1")
    shutil.copytree(b, repo / "iris" / "2")
    s = KilnServe("--repository", str(repo), "--shadow", "iris=2")
    c = tgrpc.InferenceServerClient(s.addr)
    try:
        for i in range(100):
            assert infer(c, "iris", x[i:i + 2]).get_response().model_version == "1"
        time.sleep(0.3)
        stats = {st.version: st for st in c.get_inference_statistics("iris").model_stats}
        assert stats["1"].inference_stats.success.count == 100
        assert stats["2"].inference_stats.success.count == 100  # the shadow copies ran
    finally:
        c.close()
        assert s.stop() == 0


def test_blue_green_alias_switch(bundles, mlflow_server, tmp_path):
    from mlflow import MlflowClient

    a, b, x = bundles
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    client = MlflowClient(mlflow_server.uri)
    exp = client.create_experiment(f"blue-green-{time.time_ns()}")
    name = f"iris-bg-{time.time_ns()}"
    # Two runs with the bundles as their model/ artifacts, registered as versions 1 and 2.
    for bundle in (a, b):
        run = client.create_run(exp)
        client.log_artifacts(run.info.run_id, str(bundle), "model")
        client.set_terminated(run.info.run_id)
        run_kiln("register", "--run", run.info.run_id, "--name", name, env=env)
    client.set_registered_model_alias(name, "champion", "1")
    s = KilnServe("--model", f"iris=models:/{name}@champion", "--poll-seconds", "0.3", env=env)
    c = tgrpc.InferenceServerClient(s.addr)
    try:
        assert infer(c, "iris", x[:1]).get_response().model_version == "1"
        load = Load(s.addr, "iris", x)
        time.sleep(0.3)
        client.set_registered_model_alias(name, "champion", "2")
        deadline = time.time() + 30
        while time.time() < deadline and not c.is_model_ready("iris", "2"):
            time.sleep(0.1)
        time.sleep(0.5)
        versions, failures = load.stop()
        print("answers by version:", versions)
        assert failures == []
        assert versions.get("1", 0) > 0 and versions.get("2", 0) > 0
        assert infer(c, "iris", x[:1]).get_response().model_version == "2"
        assert not c.is_model_ready("iris", "1")
    finally:
        c.close()
        assert s.stop() == 0


def held(hport):
    """Requests kiln serve has accepted: waiting in a queue or answered (from /metrics)."""
    import urllib.request

    page = urllib.request.urlopen(f"http://127.0.0.1:{hport}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in page.splitlines():
        if line.startswith(("kiln_queue_requests{", "kiln_inference_requests_success_total{")):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_sigterm_answers_queued_and_in_flight(bundles):
    a, _, x = bundles
    # A long queue delay keeps requests queued in the batcher when SIGTERM arrives.
    hport = _free_port()
    s = KilnServe("--model", f"iris={a}", "--max-queue-delay-us", "1000000", "--max-batch", "256",
                  "--http-port", str(hport))
    c = tgrpc.InferenceServerClient(s.addr)
    results, lock, done = [], threading.Lock(), threading.Event()

    def callback(result, error):
        with lock:
            results.append((result, error))
            if len(results) == 40:
                done.set()

    for i in range(40):
        inp = tgrpc.InferInput("input", [1, FEATURES], "FP32")
        inp.set_data_from_numpy(x[i:i + 1])
        c.async_infer("iris", [inp], callback)
    # SIGTERM only once the server holds all 40 (queued or answered): a request still on the
    # wire when the server says GOAWAY is the client's to retry, not one the server accepted.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and held(hport) < 40:
        time.sleep(0.01)
    assert held(hport) == 40
    s.proc.send_signal(signal.SIGTERM)
    assert done.wait(30)
    errors = [str(e) for _, e in results if e is not None]
    assert errors == []
    assert all(r.as_numpy("probabilities").shape == (1, 3) for r, _ in results)
    c.close()
    assert s.stop() == 0
