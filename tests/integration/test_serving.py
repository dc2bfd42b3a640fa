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

from conftest import FEATURES, KilnServe, run_kiln, small_bundle

grpc = pytest.importorskip("grpc", reason="grpcio is not installed (pip install grpcio)")
tgrpc = pytest.importorskip(
    "tritonclient.grpc", reason="tritonclient is not installed (pip install 'tritonclient[grpc]')"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "iris"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"


class Server(KilnServe):
    """`kiln serve --model M ...` in its own process on a free loopback port."""

    def __init__(self, *models, threads=2, extra=()):
        super().__init__("--threads", threads, *extra, models=models)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_bundle(tmp_path_factory.mktemp("serving"))


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
    assert server.banner.startswith(f"serving 1 model(s) on 127.0.0.1:{server.port}")


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
        "/inference.GRPCInferenceService/SystemSharedMemoryStatus",
        "/inference.GRPCInferenceService/CudaSharedMemoryRegister",
        "/inference.GRPCInferenceService/TraceSetting",
        "/inference.GRPCInferenceService/LogSettings",
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
    expect_error(lambda: client.get_system_shared_memory_status(), "UNIMPLEMENTED", "SharedMemory")
    expect_error(lambda: client.get_trace_settings(), "UNIMPLEMENTED", "TraceSetting")


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


# --- statistics and the repository ----------------------------------------------------------


def test_server_metadata_extensions(client):
    ext = client.get_server_metadata(as_json=True)["extensions"]
    assert {"model_configuration", "statistics", "model_repository"} <= set(ext)


def test_model_config_batching(client):
    cfg = client.get_model_config(MODEL, as_json=True)["config"]
    assert int(cfg["max_batch_size"]) >= 1
    assert "dynamic_batching" in cfg
    assert cfg["input"][0]["data_type"] == "TYPE_FP32"


def test_statistics(bundle, client):
    _, _, x, _ = bundle
    before = client.get_inference_statistics(MODEL, as_json=True)["model_stats"]
    for _ in range(3):
        client.infer(MODEL, [fp32_input(x[:4])])
    [st] = client.get_inference_statistics(MODEL, "1", as_json=True)["model_stats"]
    assert st["name"] == MODEL and st["version"] == "1"
    n0 = int(before[0].get("inference_count", 0)) if before else 0
    assert int(st["inference_count"]) >= n0 + 12  # a batch of 4 rows counts 4
    assert int(st["execution_count"]) >= 1
    assert int(st["inference_stats"]["success"]["count"]) >= 3
    assert int(st["last_inference"]) > 0
    every = client.get_inference_statistics(as_json=True)["model_stats"]  # "" = every model
    assert [s["name"] for s in every] == [MODEL]
    expect_error(lambda: client.get_inference_statistics("nope"), "NOT_FOUND", "nope")


def test_repository_index_and_unknown_load(client):
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": MODEL, "version": "1", "state": "READY"}.items() <= index[0].items()
    expect_error(lambda: client.load_model("nope"), "NOT_FOUND", "nope")
    expect_error(lambda: client.unload_model("nope"), "NOT_FOUND", "nope")
    assert_still_serving(client)


# --- ModelStreamInfer -------------------------------------------------------------------------


def test_stream_infer_100(bundle, server, client):
    """100 requests on one stream: every one answered once, each equal to the unary answer."""
    import queue

    _, _, x, _ = bundle
    got = queue.Queue()
    c = tgrpc.InferenceServerClient(server.addr)
    c.start_stream(callback=lambda result, error: got.put((result, error)))
    try:
        for k in range(100):
            lo = (k * 7) % (len(x) - 8)
            c.async_stream_infer(MODEL, [fp32_input(x[lo : lo + 1 + k % 8])], request_id=f"r{k}")
        answers = {}
        for _ in range(100):
            result, error = got.get(timeout=30)
            assert error is None, error
            rid = result.get_response().id
            assert rid not in answers
            answers[rid] = result
    finally:
        c.stop_stream()
        c.close()
    assert sorted(answers) == sorted(f"r{k}" for k in range(100))
    for k in (0, 1, 17, 63, 99):
        lo = (k * 7) % (len(x) - 8)
        unary = client.infer(MODEL, [fp32_input(x[lo : lo + 1 + k % 8])])
        streamed = answers[f"r{k}"]
        np.testing.assert_array_equal(
            streamed.as_numpy("probabilities"), unary.as_numpy("probabilities")
        )
        np.testing.assert_array_equal(streamed.as_numpy("class"), unary.as_numpy("class"))
        assert streamed.get_response().model_version == "1"


def infer_request_bytes(x, model=MODEL, rid=""):
    from tritonclient.grpc import service_pb2

    r = service_pb2.ModelInferRequest(model_name=model, id=rid)
    t = r.inputs.add(name="input", datatype="FP32", shape=list(x.shape))
    assert t is not None
    r.raw_input_contents.append(np.ascontiguousarray(x, np.float32).tobytes())
    return r.SerializeToString()


def test_stream_errors_in_band(bundle, server):
    """A malformed message and an unknown model mid-stream: error_message set, the stream goes
    on, and the client's half-close ends it with OK after the last answer."""
    from tritonclient.grpc import service_pb2

    _, _, x, _ = bundle
    msgs = [
        infer_request_bytes(x[:2], rid="a"),
        b"\xff\xff\xff\x0a\x40",  # does not parse
        infer_request_bytes(x[:1], model="nope", rid="b"),
        infer_request_bytes(x[:3], rid="c"),
    ]
    with grpc.insecure_channel(server.addr) as ch:
        call = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        out = [service_pb2.ModelStreamInferResponse.FromString(b) for b in call(iter(msgs))]
    assert len(out) == 4
    errors = [o.error_message for o in out if o.error_message]
    ok = {o.infer_response.id: o.infer_response for o in out if not o.error_message}
    assert len(errors) == 2 and sorted(ok) == ["a", "c"]
    assert any("ModelInferRequest" in e for e in errors), errors
    assert any("nope" in e for e in errors), errors
    assert len(ok["c"].raw_output_contents[0]) == 3 * 3 * 4


def test_stream_window(bundle, server):
    """500 requests sent at once on one stream: more than the server reads ahead (64), so
    reading pauses and resumes as answers drain; every request is answered once."""
    from tritonclient.grpc import service_pb2

    _, _, x, _ = bundle
    msgs = [infer_request_bytes(x[k % 50 : k % 50 + 1], rid=str(k)) for k in range(500)]
    with grpc.insecure_channel(server.addr) as ch:
        call = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")
        out = [service_pb2.ModelStreamInferResponse.FromString(b) for b in call(iter(msgs))]
    assert not [o.error_message for o in out if o.error_message]
    assert sorted(int(o.infer_response.id) for o in out) == list(range(500))


def test_perf_analyzer_streaming(server):
    """Triton's perf_analyzer over ModelStreamInfer, reading kiln's ModelStatistics."""
    from conftest import REPO

    perf = REPO / ".venv" / "bin" / "perf_analyzer"
    if not perf.exists():
        pytest.skip("perf_analyzer is not installed (scripts/setup)")
    p = subprocess.run(
        [str(perf), "-m", MODEL, "-i", "grpc", "-u", server.addr, "--streaming", "--shape",
         f"input:{FEATURES}", "--concurrency-range", "4", "--measurement-interval", "1000",
         "--max-trials", "4", "--stability-percentage", "100"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Throughput:" in p.stdout and "Execution count:" in p.stdout, p.stdout


# --- health Watch and reflection ----------------------------------------------------------------


def test_health_watch_serving_and_unknown(server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with grpc.insecure_channel(server.addr) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        assert stub.Check(health_pb2.HealthCheckRequest()).status == 1
        w = stub.Watch(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert next(w).status == health_pb2.HealthCheckResponse.SERVING
        w.cancel()  # the server must drop a cancelled watch and keep serving
        u = stub.Watch(health_pb2.HealthCheckRequest(service="x.Y"), timeout=10)
        assert next(u).status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN
        u.cancel()
        assert stub.Check(health_pb2.HealthCheckRequest()).status == 1


INFER_METHODS = [
    "ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer",
    "ModelStreamInfer", "ModelConfig", "ModelStatistics", "RepositoryIndex",
    "RepositoryModelLoad", "RepositoryModelUnload",
]  # fmt: skip


def test_reflection_descriptor_database(server):
    """grpcio-reflection (v1alpha) finds the services, the inference service's methods and a
    message's fields — the grpcurl workflow."""
    from google.protobuf.descriptor_pool import DescriptorPool
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    with grpc.insecure_channel(server.addr) as ch:
        db = ProtoReflectionDescriptorDatabase(ch)
        assert set(db.get_services()) == {
            "inference.GRPCInferenceService",
            "grpc.health.v1.Health",
            "grpc.reflection.v1.ServerReflection",
            "grpc.reflection.v1alpha.ServerReflection",
        }
        pool = DescriptorPool(db)
        svc = pool.FindServiceByName("inference.GRPCInferenceService")
        assert [m.name for m in svc.methods] == INFER_METHODS
        infer = svc.methods_by_name["ModelInfer"]
        assert infer.input_type.full_name == "inference.ModelInferRequest"
        assert svc.methods_by_name["ModelStreamInfer"].output_type.full_name == (
            "inference.ModelStreamInferResponse"
        )
        msg = pool.FindMessageTypeByName("inference.ModelInferRequest")
        fields = {f.name: f.number for f in msg.fields}
        assert fields["raw_input_contents"] == 7 and fields["inputs"] == 5
        cfg = pool.FindMessageTypeByName("inference.ModelConfig")  # from the imported file
        assert "max_batch_size" in cfg.fields_by_name
        health = pool.FindServiceByName("grpc.health.v1.Health")
        assert [m.name for m in health.methods] == ["Check", "Watch"]
        assert pool.FindMethodByName("grpc.reflection.v1alpha.ServerReflection.ServerReflectionInfo")
        with pytest.raises(KeyError):
            db.FindFileContainingSymbol("no.such.Symbol")
        with pytest.raises(KeyError):
            db.FindFileByName("no/such.proto")


def test_reflection_v1_stream(server):
    """The v1 service (same messages as v1alpha): several questions on one stream, in order."""
    from grpc_reflection.v1alpha import reflection_pb2 as rp

    qs = [
        rp.ServerReflectionRequest(list_services=""),
        rp.ServerReflectionRequest(file_containing_symbol="inference.ModelInferRequest"),
        rp.ServerReflectionRequest(file_by_filename="proto/health.proto"),
        rp.ServerReflectionRequest(file_containing_symbol="nope.Nope"),
    ]
    with grpc.insecure_channel(server.addr) as ch:
        call = ch.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=rp.ServerReflectionRequest.SerializeToString,
            response_deserializer=rp.ServerReflectionResponse.FromString,
        )
        out = list(call(iter(qs), timeout=10))
    assert len(out) == 4
    assert len(out[0].list_services_response.service) == 4
    files = out[1].file_descriptor_response.file_descriptor_proto
    assert len(files) == 2  # grpc_predict_v2.proto, then model_config.proto it imports
    assert out[1].original_request.file_containing_symbol == "inference.ModelInferRequest"
    assert len(out[2].file_descriptor_response.file_descriptor_proto) == 1
    assert out[3].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0]
    assert "nope.Nope" in out[3].error_response.error_message


# --- stopping with streams open -----------------------------------------------------------------


def test_sigterm_finishes_open_streams(bundle):
    """Open Watch and ModelStreamInfer calls do not hold the shutdown back: the watcher hears
    NOT_SERVING and its stream ends with OK, the inference stream gets its answer and then
    UNAVAILABLE; the server exits 0 well inside its grace period."""
    import threading

    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from tritonclient.grpc import service_pb2

    _, _, x, out = bundle
    s = Server(f"{MODEL}={out}")
    ch = grpc.insecure_channel(s.addr)
    try:
        w = health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=30)
        assert next(w).status == health_pb2.HealthCheckResponse.SERVING
        sent, more = threading.Event(), threading.Event()

        def requests():  # one request, then an open stream that sends nothing more
            yield infer_request_bytes(x[:2], rid="s1")
            sent.set()
            more.wait(30)

        stream = ch.stream_stream("/inference.GRPCInferenceService/ModelStreamInfer")(
            requests(), timeout=30
        )
        first = service_pb2.ModelStreamInferResponse.FromString(next(stream))
        assert first.infer_response.id == "s1" and not first.error_message
        t0 = time.monotonic()
        s.proc.send_signal(signal.SIGTERM)
        assert next(w).status == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(StopIteration):
            next(w)
        assert w.code() == grpc.StatusCode.OK
        with pytest.raises(grpc.RpcError) as e:
            next(stream)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        more.set()
        assert s.stop() == 0
        assert time.monotonic() - t0 < 5  # the grace period is 10 s: nothing waited for it
    finally:
        ch.close()
        s.stop()


# --- TLS ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client certificate, all signed by
    the CA, made with the openssl command line."""
    import shutil

    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")

    def ossl(*args):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, cwd=d)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=kiln test CA",
         "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for who, ext in (("server", ["-extfile", "server.ext"]), ("client", [])):
        ossl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={who}", "-keyout",
             f"{who}.key", "-out", f"{who}.csr")  # fmt: skip
        ossl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-out", f"{who}.pem", *ext)  # fmt: skip
    return d


def tls_client(addr, pki, client_cert=True):
    kw = {}
    if client_cert:
        kw = {"private_key": str(pki / "client.key"), "certificate_chain": str(pki / "client.pem")}
    return tgrpc.InferenceServerClient(
        addr, ssl=True, root_certificates=str(pki / "ca.pem"), **kw
    )


def test_tls(bundle, pki):
    _, _, x, out = bundle
    s = Server(f"{MODEL}={out}", extra=["--tls-cert", pki / "server.pem", "--tls-key",
                                        pki / "server.key"])  # fmt: skip
    try:
        c = tls_client(s.addr, pki, client_cert=False)
        assert c.infer(MODEL, [fp32_input(x[:3])]).as_numpy("class").shape == (3,)
        c.close()
        plain = tgrpc.InferenceServerClient(s.addr)  # plaintext against TLS: refused
        with pytest.raises(InferenceServerException):
            plain.is_server_live(client_timeout=3)
        plain.close()
    finally:
        assert s.stop() == 0


def test_tls_client_certificate_optional(bundle, pki):
    """With a client CA but no requirement, clients with and without a certificate connect."""
    _, _, x, out = bundle
    s = Server(f"{MODEL}={out}", extra=["--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--tls-ca", pki / "ca.pem"])  # fmt: skip
    try:
        for cert in (True, False):
            c = tls_client(s.addr, pki, client_cert=cert)
            assert c.infer(MODEL, [fp32_input(x[:2])]).as_numpy("class").shape == (2,)
            c.close()
    finally:
        assert s.stop() == 0


def test_tls_client_certificate_required(bundle, pki):
    _, _, x, out = bundle
    s = Server(f"{MODEL}={out}", extra=["--tls-cert", pki / "server.pem", "--tls-key",
               pki / "server.key", "--tls-ca", pki / "ca.pem", "--require-client-cert"])  # fmt: skip
    try:
        c = tls_client(s.addr, pki)
        assert c.infer(MODEL, [fp32_input(x[:2])]).as_numpy("class").shape == (2,)
        c.close()
        anon = tls_client(s.addr, pki, client_cert=False)
        with pytest.raises(InferenceServerException):
            anon.is_server_live(client_timeout=3)
        anon.close()
    finally:
        assert s.stop() == 0


def test_tls_bad_files(bundle, tmp_path):
    _, _, _, out = bundle
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    p = run_kiln("serve", "--model", f"m={out}", "--port", "0", "--tls-cert", junk, "--tls-key",
                 junk, check=False)  # fmt: skip
    assert p.returncode == 1 and "PEM" in p.stderr, p.stderr
    p = run_kiln("serve", "--model", f"m={out}", "--port", "0", "--tls-cert", tmp_path / "none",
                 "--tls-key", junk, check=False)  # fmt: skip
    assert p.returncode == 1 and "none" in p.stderr, p.stderr
