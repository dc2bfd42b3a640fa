"""`kiln serve` against the real clients: tritonclient.grpc (the Open Inference Protocol as Triton
speaks it) and grpcio (health checks, raw bytes, methods kiln does not serve).

One server for the module, on a free loopback port, serving a bundle `kiln train` makes from a
tiny CSV. Its answers must equal `kiln predict`'s on the same rows; malformed requests get the
right gRPC status and message and the server keeps answering; SIGTERM ends it with exit code 0.

The kiln binary is $KILN_BIN (default: build/kiln in the repository).
"""

import csv
import signal
import subprocess
import time

import numpy as np
import pytest

from conftest import KILN, _free_port, run_kiln

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (pip install grpcio)")
tgrpc = pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient is not installed (pip install 'tritonclient[grpc]')"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

LABELS = ["red", "green", "blue"]
FEATURES = 6
MODEL = "iris"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def write_dataset(path, rows=200, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, FEATURES)) * rng.uniform(0.5, 20, size=FEATURES) + rng.uniform(
        -5, 5, size=FEATURES
    )
    x = np.round(x, 4).astype(np.float32)
    w = rng.normal(size=(FEATURES, 3))
    z = ((x - x.mean(0)) / x.std(0)) @ w
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{j}" for j in range(FEATURES)] + ["label"])
        for i in range(rows):
            out.writerow([f"{v:.4f}" for v in x[i]] + [LABELS[int(np.argmax(z[i]))]])
    return x


class Server:
    """`kiln serve` in its own process on a free loopback port."""

    def __init__(self, *models, threads=2, extra=()):
        self.port = _free_port()
        self.addr = f"127.0.0.1:{self.port}"
        args = [str(KILN), "serve", "--port", str(self.port), "--threads", str(threads)]
        for m in models:
            args += ["--model", m]
        args += list(extra)
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.banner = self.proc.stdout.readline()  # printed once the port is bound
        if not self.banner.startswith("serving"):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"kiln serve did not start: {self.banner!r}\n{err}")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
            raise AssertionError(f"kiln serve did not stop on {sig!r} within {timeout}s")
        return self.proc.returncode


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    d = tmp_path_factory.mktemp("serving")
    data = d / "data.csv"
    x = write_dataset(data)
    out = d / "model"
    cfg = d / "cfg.yaml"
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: label, val_fraction: 0.2, "
        "transform: standard}\n"
        "model: {layers: 6-16-3, activation: tanh, dropout: 0.0, task: classification}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 3, seed: 1, threads: 1}\n"
        f"output: {out}\n"
    )
    run_kiln("train", "--config", cfg)
    return d, data, x, out


@pytest.fixture(scope="module")
def server(bundle):
    _, _, _, out = bundle
    s = Server(f"{MODEL}={out}")
    yield s
    assert s.stop() == 0


@pytest.fixture
def client(server):
    c = tgrpc.InferenceServerClient(server.addr)
    yield c
    c.close()


def kiln_predict(bundle):
    d, data, _, out = bundle
    preds = d / "preds.csv"
    run_kiln("predict", "--model", out, "--input", data, "--output", preds)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(v) for v in r[2:]] for r in rows])


def fp32_input(x, name="input"):
    i = tgrpc.InferInput(name, list(x.shape), "FP32")
    i.set_data_from_numpy(np.ascontiguousarray(x, np.float32))
    return i


def raw_call(server, method, payload, timeout=10):
    """One unary call with bytes in and bytes out (identity serializers)."""
    with grpc.insecure_channel(server.addr) as ch:
        f = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
        return f(payload, timeout=timeout)


def assert_still_serving(client):
    assert client.is_server_live()
    x = np.zeros((1, FEATURES), np.float32)
    r = client.infer(MODEL, [fp32_input(x)])
    assert r.as_numpy("probabilities").shape == (1, 3)


# --- the protocol through tritonclient --------------------------------------------------------


def test_banner(server):
    assert server.banner.strip() == f"serving 1 model(s) on 127.0.0.1:{server.port}"


def test_live_ready(client):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("no-such-model")
    assert not client.is_model_ready(MODEL, "7")


def test_metadata(client):
    md = client.get_model_metadata(MODEL, as_json=True)
    assert md["name"] == MODEL
    assert md["versions"] == ["1"]
    [inp] = md["inputs"]
    assert inp["datatype"] == "FP32" and [int(v) for v in inp["shape"]] == [-1, FEATURES]
    outs = {o["name"]: o for o in md["outputs"]}
    assert [int(v) for v in outs["probabilities"]["shape"]] == [-1, 3]
    assert outs["probabilities"]["datatype"] == "FP32"
    assert outs["class"]["datatype"] == "INT64"
    sm = client.get_server_metadata(as_json=True)
    assert sm["name"] == "kiln"
    cfg = client.get_model_config(MODEL, as_json=True)["config"]
    assert cfg["name"] == MODEL


def test_infer_matches_kiln_predict(bundle, client):
    _, _, x, _ = bundle
    expected = kiln_predict(bundle)
    r = client.infer(MODEL, [fp32_input(x)], request_id="req-42")
    probs = r.as_numpy("probabilities")
    classes = r.as_numpy("class")
    assert probs.dtype == np.float32 and probs.shape == (len(x), 3)
    assert np.max(np.abs(probs.astype(np.float64) - expected)) <= 1e-6
    assert classes.dtype == np.int64
    np.testing.assert_array_equal(classes, np.argmax(probs, axis=1))
    resp = r.get_response()
    assert resp.id == "req-42" and resp.model_name == MODEL and resp.model_version == "1"


def test_infer_one_output_and_version(bundle, client):
    _, _, x, _ = bundle
    out = [tgrpc.InferRequestedOutput("class")]
    r = client.infer(MODEL, [fp32_input(x[:5])], model_version="1", outputs=out)
    assert r.as_numpy("class").shape == (5,)
    assert r.as_numpy("probabilities") is None


def test_concurrent_infer(bundle, server):
    """Many clients at once on both CQ threads: every answer is its own rows' answer."""
    from concurrent.futures import ThreadPoolExecutor

    _, _, x, _ = bundle
    expected = kiln_predict(bundle)

    def work(k):
        c = tgrpc.InferenceServerClient(server.addr)
        try:
            for j in range(20):
                lo = (k * 7 + j * 3) % (len(x) - 10)
                n = 1 + (k + j) % 10
                p = c.infer(MODEL, [fp32_input(x[lo : lo + n])]).as_numpy("probabilities")
                assert np.max(np.abs(p.astype(np.float64) - expected[lo : lo + n])) <= 1e-6
        finally:
            c.close()
        return True

    with ThreadPoolExecutor(8) as ex:
        assert all(ex.map(work, range(8)))


def test_health_check_serving(server):
    # HealthCheckRequest{service=""} is the empty message; the response is {status=SERVING(1)}.
    assert raw_call(server, HEALTH_CHECK, b"") == b"\x08\x01"
    svc = b"inference.GRPCInferenceService"
    assert raw_call(server, HEALTH_CHECK, b"\x0a" + bytes([len(svc)]) + svc) == b"\x08\x01"
    with pytest.raises(grpc.RpcError) as e:
        raw_call(server, HEALTH_CHECK, b"\x0a\x03abc")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND


# --- malformed requests -----------------------------------------------------------------------


def expect_error(fn, code, fragment):
    with pytest.raises(InferenceServerException) as e:
        fn()
    assert e.value.status() == f"StatusCode.{code}", (e.value.status(), e.value.message())
    assert fragment in e.value.message(), e.value.message()
    return e.value.message()


def test_unknown_model_not_found(client):
    x = np.zeros((1, FEATURES), np.float32)
    expect_error(lambda: client.infer("nope", [fp32_input(x)]), "NOT_FOUND", "nope")
    expect_error(lambda: client.infer(MODEL, [fp32_input(x)], model_version="9"), "NOT_FOUND", "9")
    expect_error(lambda: client.get_model_metadata("nope"), "NOT_FOUND", "nope")
    assert_still_serving(client)


def test_wrong_shape_invalid_argument(client):
    x = np.zeros((2, FEATURES + 1), np.float32)
    msg = expect_error(lambda: client.infer(MODEL, [fp32_input(x)]), "INVALID_ARGUMENT", "shape")
    assert str(FEATURES) in msg
    assert_still_serving(client)


def test_wrong_datatype_invalid_argument(client):
    i = tgrpc.InferInput("input", [1, FEATURES], "FP64")
    i.set_data_from_numpy(np.zeros((1, FEATURES), np.float64))
    expect_error(lambda: client.infer(MODEL, [i]), "INVALID_ARGUMENT", "FP64")
    assert_still_serving(client)


def test_random_bytes_invalid_argument(server, client):
    rng = np.random.default_rng(7)
    for n in (1, 17, 1000):
        junk = bytes(rng.integers(0, 256, size=n, dtype=np.uint8)) + b"\xff\xff\xff"
        with pytest.raises(grpc.RpcError) as e:
            raw_call(server, "/inference.GRPCInferenceService/ModelInfer", junk)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
        assert e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        raw_call(server, HEALTH_CHECK, b"\xff\xff\xff")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert_still_serving(client)


@pytest.mark.parametrize(
    "method",
    [
        "/inference.GRPCInferenceService/ModelStatistics",
        "/inference.GRPCInferenceService/RepositoryIndex",
        "/grpc.health.v1.Health/Watch",
        "/no.Such/Method",
    ],
)
def test_unimplemented(server, client, method):
    with pytest.raises(grpc.RpcError) as e:
        raw_call(server, method, b"")
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert method in e.value.details()
    assert_still_serving(client)


def test_unimplemented_through_tritonclient(client):
    expect_error(lambda: client.get_inference_statistics(MODEL), "UNIMPLEMENTED", "ModelStatistics")


# --- lifecycle ----------------------------------------------------------------------------------


def test_bad_bundle_and_usage(tmp_path):
    p = run_kiln("serve", "--model", f"m={tmp_path / 'missing'}", "--port", "0", check=False)
    assert p.returncode == 1 and 'load model "m"' in p.stderr
    p = run_kiln("serve", check=False)
    assert p.returncode == 2


def test_port_in_use(bundle, server):
    _, _, _, out = bundle
    p = run_kiln("serve", "--model", f"m={out}", "--port", str(server.port), check=False,
                 timeout=60)
    assert p.returncode == 1 and "cannot listen" in p.stderr


def test_oversized_message_resource_exhausted(bundle):
    _, _, x, out = bundle
    s = Server(f"{MODEL}={out}", extra=["--max-message-mb", "1"])
    try:
        c = tgrpc.InferenceServerClient(s.addr)
        big = np.zeros((48000, FEATURES), np.float32)  # 1.15 MB: over the 1 MiB limit
        inputs = [fp32_input(big)]
        expect_error(lambda: c.infer(MODEL, inputs), "RESOURCE_EXHAUSTED", "")
        assert c.infer(MODEL, [fp32_input(x[:2])]).as_numpy("class").shape == (2,)
        c.close()
    finally:
        assert s.stop() == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_exits_zero(bundle, sig):
    _, _, x, out = bundle
    s = Server(f"a={out}", f"b={out}", threads=1)
    try:
        assert s.banner.startswith("serving 2 model(s)")
        c = tgrpc.InferenceServerClient(s.addr)
        assert c.infer("b", [fp32_input(x[:3])]).as_numpy("class").shape == (3,)
        c.close()
    finally:
        t0 = time.monotonic()
        assert s.stop(sig) == 0
    assert time.monotonic() - t0 < 15
