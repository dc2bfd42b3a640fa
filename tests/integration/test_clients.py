"""`kiln infer` and `kiln loadgen`, the C clients on the gRPC core API, against two servers:

- `kiln serve` with a bundle `kiln train` makes from a tiny CSV: `kiln infer` must answer what
  `kiln predict` answers on the same rows, errors read as gRPC status + message with exit 1, and
  `kiln loadgen` makes exactly the calls it says with sane percentiles;
- a Python grpcio server implementing the KServe v2 service from tritonclient's own protos
  (not kiln): other input/output names and datatypes, typed `contents` instead of raw bytes, a
  malformed answer, failures by status code, a slow model that shows the closed loop keeps
  exactly --concurrency calls outstanding, and TLS with --ca.

The kiln binary is $KILN_BIN (default: build/kiln in the repository).
"""

import csv
import gzip
import json
import re
import struct
import subprocess
import threading
import time
from concurrent import futures

import numpy as np
import pytest

from conftest import FEATURES, KilnServe, _free_port, run_kiln, small_bundle

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (pip install grpcio)")
tgrpc = pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient is not installed (pip install 'tritonclient[grpc]')"
)
from tritonclient.grpc import service_pb2 as pb  # noqa: E402
from tritonclient.grpc import service_pb2_grpc as pb_grpc  # noqa: E402

MODEL = "iris"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_bundle(tmp_path_factory.mktemp("clients"))


@pytest.fixture(scope="module")
def server(bundle):
    _, _, _, out = bundle
    s = KilnServe(models=[f"{MODEL}={out}"])
    yield s
    assert s.stop() == 0


@pytest.fixture(scope="module")
def predicted(bundle):
    """`kiln predict` on the training CSV: (class names in output order, probabilities, accuracy line)."""
    d, data, _, out = bundle
    preds = d / "preds.csv"
    p = run_kiln("predict", "--model", out, "--input", data, "--output", preds)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))
    names = [h[len("prob_"):] for h in rows[0][2:]]
    probs = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    return names, probs, p.stderr.strip()


def read_csv(path_or_text):
    text = path_or_text if isinstance(path_or_text, str) else path_or_text.read_text()
    rows = list(csv.reader(text.splitlines()))
    return rows[0], np.array([[float(v) for v in r] for r in rows[1:]])


def infer(*args, check=False):
    return run_kiln("infer", *map(str, args), check=check, timeout=120)


def loadgen(*args, check=False):
    return run_kiln("loadgen", *map(str, args), check=check, timeout=300)


# --- kiln infer against kiln serve ------------------------------------------------------------


def test_infer_matches_kiln_predict(bundle, server, predicted, tmp_path):
    d, data, x, _ = bundle
    names, expected, _ = predicted
    out = tmp_path / "infer.csv"
    p = infer("--url", server.addr, "--model", MODEL, "--input", data, "--batch-size", 32,
              "--output", out)
    assert p.returncode == 0, p.stderr
    header, got = read_csv(out)
    assert header == ["index", "class", "prob_0", "prob_1", "prob_2"]
    assert got.shape == (len(x), 5)
    np.testing.assert_array_equal(got[:, 0], np.arange(len(x)))
    assert np.max(np.abs(got[:, 2:] - expected)) <= 1e-6
    np.testing.assert_array_equal(got[:, 1], np.argmax(expected, axis=1))


def test_infer_stdout_batch_sizes_and_headerless(bundle, server, predicted, tmp_path):
    """Every batch size gives the same rows; a CSV without a header reads the same."""
    _, data, x, _ = bundle
    _, expected, _ = predicted
    bare = tmp_path / "bare.csv"
    with open(data) as f, open(bare, "w") as g:
        next(f)
        for line in f:
            g.write(line.rsplit(",", 1)[0] + "\n")  # features only, no header
    for path, batch in ((data, 1), (data, 7), (bare, 200), (bare, 1000)):
        p = infer("--url", f"grpc://{server.addr}", "--model", MODEL, "--model-version", "1",
                  "--input", path, "--batch-size", batch)
        assert p.returncode == 0, p.stderr
        _, got = read_csv(p.stdout)
        assert got.shape == (len(x), 5), (path, batch)
        assert np.max(np.abs(got[:, 2:] - expected)) <= 1e-6, (path, batch)


def test_infer_labels_accuracy(bundle, server, predicted, tmp_path):
    """--labels: a CSV column of class indices, or an IDX labels file; accuracy as kiln predict's."""
    _, data, _, _ = bundle
    names, _, predict_line = predicted
    with open(data, newline="") as f:
        idx = [names.index(r["label"]) for r in csv.DictReader(f)]
    lab_csv = tmp_path / "labels.csv"
    lab_csv.write_text("label\n" + "".join(f"{v}\n" for v in idx))
    lab_idx = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(lab_idx, "wb") as f:
        f.write(struct.pack(">HBBI", 0, 0x08, 1, len(idx)) + bytes(idx))
    want = re.search(r"accuracy [0-9.]+ \(\d+/\d+\)", predict_line).group(0)
    for labels in (lab_csv, lab_idx):
        p = infer("--url", server.addr, "--model", MODEL, "--input", data, "--labels", labels,
                  "--output", tmp_path / "o.csv")
        assert p.returncode == 0, p.stderr
        assert want in p.stderr, (want, p.stderr)
    # String labels are not class indices: a clear error, exit 1.
    p = infer("--url", server.addr, "--model", MODEL, "--input", data, "--labels", data)
    assert p.returncode == 1 and "not a class index" in p.stderr, p.stderr


def test_infer_idx_input(server, bundle, tmp_path):
    """IDX rows (uint8 [n, 2, 3]) go out as stored values and answer like tritonclient's call."""
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, size=(10, 2, 3), dtype=np.uint8)
    path = tmp_path / "imgs-idx3-ubyte"
    path.write_bytes(struct.pack(">HBB3I", 0, 0x08, 3, 10, 2, 3) + imgs.tobytes())
    p = infer("--url", server.addr, "--model", MODEL, "--input", path, "--batch-size", 4)
    assert p.returncode == 0, p.stderr
    _, got = read_csv(p.stdout)
    c = tgrpc.InferenceServerClient(server.addr)
    i = tgrpc.InferInput("input", [10, FEATURES], "FP32")
    i.set_data_from_numpy(imgs.reshape(10, FEATURES).astype(np.float32))
    want = c.infer(MODEL, [i]).as_numpy("probabilities")
    c.close()
    assert np.max(np.abs(got[:, 2:] - want)) <= 1e-6


def test_infer_errors(server, bundle, tmp_path):
    _, data, _, _ = bundle
    p = infer("--url", server.addr, "--model", "nope", "--input", data)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr and "nope" in p.stderr, p.stderr
    p = infer("--url", f"127.0.0.1:{_free_port()}", "--model", MODEL, "--input", data,
              "--timeout-ms", 5000)
    assert p.returncode == 1 and "UNAVAILABLE" in p.stderr, p.stderr
    p = infer("--url", server.addr, "--model", MODEL, "--input", tmp_path / "missing.csv")
    assert p.returncode == 1 and "cannot open" in p.stderr and "missing.csv" in p.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,c,d,e,f\n1,2,3,4,5,6\n1,2,x,4,5,6\n")
    p = infer("--url", server.addr, "--model", MODEL, "--input", bad)
    assert p.returncode == 1 and "line 3" in p.stderr and '"x" is not a number' in p.stderr
    narrow = tmp_path / "narrow.csv"
    narrow.write_text("1,2,3,4,5\n6,7,8,9,10\n")
    p = infer("--url", server.addr, "--model", MODEL, "--input", narrow)
    assert p.returncode == 1 and "takes 6 values per row" in p.stderr and "have 5" in p.stderr
    ragged = tmp_path / "ragged.csv"
    ragged.write_text("1,2,3,4,5,6\n1,2,3\n")
    p = infer("--url", server.addr, "--model", MODEL, "--input", ragged)
    assert p.returncode == 1 and "line 2" in p.stderr, p.stderr
    # The model's own validation comes back as its status: a wrong datatype.
    p = infer("--url", server.addr, "--model", MODEL, "--input", data, "--input-name", "input",
              "--datatype", "FP64")
    assert p.returncode == 1 and "INVALID_ARGUMENT" in p.stderr and "FP64" in p.stderr, p.stderr
    p = run_kiln("infer", "--model", MODEL, check=False)
    assert p.returncode == 2


# --- kiln loadgen against kiln serve ----------------------------------------------------------


def parse_text_report(out):
    m = re.search(r"requests:\s+(\d+) in ([0-9.]+) s \((\d+) succeeded, (\d+) failed\)", out)
    lat = re.search(r"p50 (\d+)\s+p90 (\d+)\s+p99 (\d+)\s+max (\d+)", out)
    thr = re.search(r"throughput:\s+([0-9.]+) infer/s, ([0-9.]+) requests/s", out)
    assert m and lat and thr, out
    return [int(v) for v in (m.group(1), m.group(3), m.group(4))], [int(v) for v in lat.groups()], \
        [float(v) for v in thr.groups()]


def test_loadgen_count(server):
    p = loadgen("--url", server.addr, "--model", MODEL, "--count", 500, "--concurrency", 8)
    assert p.returncode == 0, p.stderr
    (total, ok, failed), (p50, p90, p99, mx), (ips, rps) = parse_text_report(p.stdout)
    assert (total, ok, failed) == (500, 500, 0)
    assert 0 < p50 <= p90 <= p99 <= mx
    assert ips > 0 and rps == ips  # batch 1


def test_loadgen_json(server, bundle):
    _, data, _, _ = bundle
    p = loadgen("--url", server.addr, "--model", MODEL, "--count", 500, "--concurrency", 8,
                "--batch-size", 4, "--input", data, "--json", "--threads", 2, "--connections", 2)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["successes"] == 500 and r["failures"] == 0 and r["failures_by_code"] == {}
    assert r["requests"] == 500 and r["batch_size"] == 4 and r["concurrency"] == 8
    lat = r["latency_us"]
    assert lat["samples"] == 500
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert r["infer_per_s"] == pytest.approx(4 * r["requests_per_s"])
    assert r["input"] == "input" and r["datatype"] == "FP32"


def test_loadgen_duration_warmup(server):
    t0 = time.monotonic()
    p = loadgen("--url", server.addr, "--model", MODEL, "--duration", 1, "--warmup", 0.5,
                "--concurrency", 4, "--json")
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["successes"] > 0 and r["failures"] == 0
    assert r["elapsed_s"] == pytest.approx(1.0, abs=0.05)
    assert 1.4 <= took < 30


def test_loadgen_errors(server):
    p = loadgen("--url", server.addr, "--model", "nope", "--count", 10)
    assert p.returncode == 1 and "NOT_FOUND" in p.stderr and "nope" in p.stderr
    p = loadgen("--url", f"127.0.0.1:{_free_port()}", "--model", MODEL, "--count", 10)
    assert p.returncode == 1 and "UNAVAILABLE" in p.stderr
    p = loadgen("--url", server.addr, "--model", MODEL, "--count", 10, "--duration", 1)
    assert p.returncode == 2


# --- a Python Open Inference Protocol server that is not kiln ---------------------------------

W = np.arange(12, dtype=np.float32).reshape(FEATURES, 2) / 10 - 0.5


class PyOip(pb_grpc.GRPCInferenceServiceServicer):
    """KServe v2 over grpcio with tritonclient's protos. Models:
    linear  dense_input FP32 [-1,6] -> scores FP32 [-1,2] (x @ W), best INT64 [-1]; raw bytes
    typed   the same, answered in typed contents (fp32_contents, int64_contents)
    pixels  img UINT8 [-1,2,3] -> total FP64 [-1]
    broken  answers 3 bytes too few in raw_output_contents
    flaky   like linear, but every 3rd call fails with RESOURCE_EXHAUSTED
    slow    like linear after 30 ms; records the most calls in flight at once"""

    def __init__(self):
        self.lock = threading.Lock()
        self.calls = {}
        self.in_flight = 0
        self.max_in_flight = 0

    def ModelMetadata(self, request, context):
        t = pb.ModelMetadataResponse.TensorMetadata
        if request.name in ("linear", "typed", "broken", "flaky", "slow"):
            return pb.ModelMetadataResponse(
                name=request.name, versions=["7"], platform="numpy",
                inputs=[t(name="dense_input", datatype="FP32", shape=[-1, FEATURES])],
                outputs=[t(name="scores", datatype="FP32", shape=[-1, 2]),
                         t(name="best", datatype="INT64", shape=[-1])])
        if request.name == "pixels":
            return pb.ModelMetadataResponse(
                name="pixels", versions=["1"], platform="numpy",
                inputs=[t(name="img", datatype="UINT8", shape=[-1, 2, 3])],
                outputs=[t(name="total", datatype="FP64", shape=[-1])])
        context.abort(grpc.StatusCode.NOT_FOUND, f"no model named '{request.name}'")

    def ModelInfer(self, request, context):
        name = request.model_name
        with self.lock:
            n = self.calls[name] = self.calls.get(name, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._infer(request, context, name, n)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _infer(self, request, context, name, n):
        if name not in ("linear", "typed", "broken", "flaky", "slow", "pixels"):
            context.abort(grpc.StatusCode.NOT_FOUND, f"no model named '{name}'")
        [inp] = request.inputs
        shape = list(inp.shape)
        out = pb.ModelInferResponse(model_name=name, model_version="7", id=request.id)
        o = pb.ModelInferResponse.InferOutputTensor
        if name == "pixels":
            if inp.datatype != "UINT8" or shape[1:] != [2, 3]:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"got {inp.datatype} {shape}")
            x = np.frombuffer(request.raw_input_contents[0], np.uint8).reshape(shape)
            total = x.reshape(shape[0], -1).sum(1).astype(np.float64)
            out.outputs.append(o(name="total", datatype="FP64", shape=[shape[0]]))
            out.raw_output_contents.append(total.tobytes())
            return out
        if inp.name != "dense_input" or inp.datatype != "FP32" or shape[1:] != [FEATURES]:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                          f"input {inp.name} {inp.datatype} {shape}: want dense_input FP32 [-1,6]")
        if name == "flaky" and n % 3 == 0:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full, try later")
        if name == "slow":
            time.sleep(0.03)
        x = np.frombuffer(request.raw_input_contents[0], np.float32).reshape(shape)
        scores = (x @ W).astype(np.float32)
        best = np.argmax(scores, axis=1).astype(np.int64)
        wanted = [r.name for r in request.outputs] or ["scores", "best"]
        for w in wanted:
            v = scores if w == "scores" else best
            t = o(name=w, datatype="FP32" if w == "scores" else "INT64", shape=list(v.shape))
            if name == "typed":
                if w == "scores":
                    t.contents.fp32_contents.extend(v.ravel().tolist())
                else:
                    t.contents.int64_contents.extend(v.tolist())
            out.outputs.append(t)
            if name != "typed":
                raw = v.tobytes()
                out.raw_output_contents.append(raw[:-3] if name == "broken" else raw)
        return out


def start_py_server(tls=None):
    impl = PyOip()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_GRPCInferenceServiceServicer_to_server(impl, srv)
    if tls:
        key, cert = tls
        port = srv.add_secure_port("localhost:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = srv.add_insecure_port("127.0.0.1:0")
    srv.start()
    return srv, impl, port


@pytest.fixture(scope="module")
def pyserver():
    srv, impl, port = start_py_server()
    yield impl, f"127.0.0.1:{port}"
    srv.stop(grace=None)


@pytest.fixture
def rows(tmp_path):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(23, FEATURES)).astype(np.float32)
    path = tmp_path / "rows.csv"
    np.savetxt(path, x, delimiter=",", fmt="%.6f")
    return np.loadtxt(path, delimiter=",", dtype=np.float32), path


@pytest.mark.parametrize("model", ["linear", "typed"])
def test_infer_other_server(pyserver, rows, model):
    _, addr = pyserver
    x, path = rows
    p = infer("--url", addr, "--model", model, "--input", path, "--batch-size", 5)
    assert p.returncode == 0, p.stderr
    header, got = read_csv(p.stdout)
    assert header == ["index", "scores_0", "scores_1", "best"]
    scores = x @ W
    assert np.max(np.abs(got[:, 1:3] - scores)) <= 1e-5
    np.testing.assert_array_equal(got[:, 3], np.argmax(scores, axis=1))
    # --outputs asks for one output only.
    p = infer("--url", addr, "--model", model, "--input", path, "--outputs", "best")
    assert p.returncode == 0, p.stderr
    header, got = read_csv(p.stdout)
    assert header == ["index", "best"]


def test_infer_other_datatypes(pyserver, tmp_path):
    """UINT8 input [-1,2,3] from ModelMetadata, FP64 output; values out of range are refused."""
    _, addr = pyserver
    x = np.arange(24, dtype=np.float32).reshape(4, 6) * 10
    path = tmp_path / "px.csv"
    np.savetxt(path, x, delimiter=",", fmt="%g")
    p = infer("--url", addr, "--model", "pixels", "--input", path)
    assert p.returncode == 0, p.stderr
    header, got = read_csv(p.stdout)
    assert header == ["index", "total"]
    np.testing.assert_array_equal(got[:, 1], x.sum(1))
    np.savetxt(path, x + 100, delimiter=",", fmt="%g")
    p = infer("--url", addr, "--model", "pixels", "--input", path)
    assert p.returncode == 1 and "does not fit UINT8" in p.stderr, p.stderr


def test_infer_malformed_answer(pyserver, rows):
    _, addr = pyserver
    _, path = rows
    p = infer("--url", addr, "--model", "broken", "--input", path, "--batch-size", 5)
    assert p.returncode == 1
    assert ('ModelInfer "broken" rows 0..4: ModelInferResponse: output "scores": '
            "raw_output_contents[0] holds 37 bytes, shape [5,2] of FP32 needs 40") in p.stderr


def test_infer_other_server_errors(pyserver, rows):
    _, addr = pyserver
    _, path = rows
    p = infer("--url", addr, "--model", "ghost", "--input", path)
    assert p.returncode == 1 and "NOT_FOUND: no model named 'ghost'" in p.stderr, p.stderr
    p = infer("--url", addr, "--model", "slow", "--input", path, "--timeout-ms", 10,
              "--input-name", "dense_input")
    assert p.returncode == 1 and "DEADLINE_EXCEEDED" in p.stderr, p.stderr


def test_loadgen_other_server_exact_count(pyserver):
    impl, addr = pyserver
    before = impl.calls.get("linear", 0)
    p = loadgen("--url", addr, "--model", "linear", "--count", 200, "--concurrency", 4, "--json",
                "--batch-size", 3)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["successes"] == 200 and r["failures"] == 0 and r["input"] == "dense_input"
    assert 0 < r["latency_us"]["p50"] <= r["latency_us"]["p90"] <= r["latency_us"]["p99"]
    assert impl.calls["linear"] - before == 201  # the probe call, then exactly --count


def test_loadgen_closed_loop_concurrency(pyserver):
    """The server sees exactly --concurrency calls in flight, never more."""
    impl, addr = pyserver
    impl.max_in_flight = 0
    p = loadgen("--url", addr, "--model", "slow", "--count", 48, "--concurrency", 6, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["successes"] == 48
    assert impl.max_in_flight == 6
    assert r["latency_us"]["p50"] >= 30000  # the model's 30 ms


def test_loadgen_failures_by_code(pyserver):
    impl, addr = pyserver
    impl.calls["flaky"] = 0
    p = loadgen("--url", addr, "--model", "flaky", "--count", 30, "--concurrency", 3, "--json")
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    # Calls 2..31 after the probe; every third one fails.
    assert r["failures_by_code"] == {"RESOURCE_EXHAUSTED": 10}
    assert r["successes"] == 20 and r["failures"] == 10 and r["requests"] == 30
    assert "queue full" in r["first_failure"]


def test_tls_with_ca(rows, tmp_path):
    """--ca FILE: a TLS channel that trusts the given CA (here a self-signed localhost cert)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
                        "-keyout", key, "-out", cert], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"openssl cannot make a test certificate: {r.stderr.decode()[-300:]}")
    srv, _, port = start_py_server(tls=(key.read_bytes(), cert.read_bytes()))
    try:
        _, path = rows
        url = f"localhost:{port}"
        p = infer("--url", url, "--model", "linear", "--input", path, "--ca", cert)
        assert p.returncode == 0, p.stderr
        assert read_csv(p.stdout)[1].shape == (23, 4)
        p = loadgen("--url", url, "--model", "linear", "--count", 20, "--ca", cert, "--json")
        assert p.returncode == 0 and json.loads(p.stdout)["successes"] == 20, p.stderr
        p = infer("--url", url, "--model", "linear", "--input", path)  # no --ca: plaintext
        assert p.returncode == 1 and "UNAVAILABLE" in p.stderr, p.stderr
        p = infer("--url", url, "--model", "linear", "--input", path, "--ca", key)
        assert p.returncode == 1 and "no PEM certificate" in p.stderr, p.stderr
    finally:
        srv.stop(grace=None)
