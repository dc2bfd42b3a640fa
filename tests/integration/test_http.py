"""`kiln serve --http-port` against tritonclient.http and plain HTTP: the REST form of the Open
Inference Protocol (KServe v2, as Triton serves it) and the Prometheus /metrics page.

One server for the module, on free loopback ports, serving a bundle `kiln train` makes from a
tiny CSV. Inference over HTTP (Triton's binary tensor extension and plain JSON, gzip bodies too)
must equal `kiln predict` on the same rows; health, metadata, config, statistics and the
repository index answer in Triton's JSON shapes; /metrics parses and its counters move;
malformed requests get the right status and message; random requests never stop the server.

The kiln binary is $KILN_BIN (default: build/kiln in the repository).
"""

import csv
import gzip
import http.client
import json
import random
import re
import socket
import threading
import time

import numpy as np
import pytest

from conftest import FEATURES, KilnServe, _free_port, run_kiln, small_bundle

thttp = pytest.importorskip(
    "tritonclient.http", reason="tritonclient is not installed (pip install 'tritonclient[http]')"
)
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "iris"
MAX_BODY = 64 << 20  # kl_http_server_defaults().max_body_bytes


def kiln_predict(bundle):
    """`kiln predict` on the training CSV: the probabilities, one row per input row."""
    d, data, _, out = bundle
    preds = d / "preds.csv"
    run_kiln("predict", "--model", out, "--input", data, "--output", preds)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))[1:]
    return np.array([[float(v) for v in r[2:]] for r in rows])


class HttpServer(KilnServe):
    """`kiln serve` with --http-port, in its own process; the HTTP address from its banner."""

    def __init__(self, *models, extra=()):
        super().__init__("--http-port", "0", *extra, models=models)
        m = re.search(r"([0-9.]+):(\d+) \(HTTP", self.banner)
        if not m:
            self.proc.kill()
            _, err = self.proc.communicate(timeout=30)
            raise AssertionError(f"kiln serve did not start with HTTP: {self.banner!r}\n{err}")
        self.host, self.port = m.group(1), int(m.group(2))
        self.addr = f"{self.host}:{self.port}"

    def request(self, method, path, body=None, headers=None, timeout=30):
        """One request on a fresh connection: (status, headers dict, body bytes)."""
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            c.request(method, path, body=body, headers=headers or {})
            r = c.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            c.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_bundle(tmp_path_factory.mktemp("http"))


@pytest.fixture(scope="module")
def server(bundle):
    s = HttpServer(f"{MODEL}={bundle[3]}")
    yield s
    assert s.stop() == 0


@pytest.fixture
def client(server):
    c = thttp.InferenceServerClient(server.addr)
    yield c
    c.close()


@pytest.fixture(scope="module")
def expected(bundle):
    return kiln_predict(bundle)


def fp32_input(x, binary=True, name="input"):
    i = thttp.InferInput(name, list(x.shape), "FP32")
    i.set_data_from_numpy(np.ascontiguousarray(x, np.float32), binary_data=binary)
    return i


def infer_json(server, body, path=f"/v2/models/{MODEL}/infer", headers=None):
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    status, h, out = server.request("POST", path, data, headers)
    return status, h, out


def good_body(rows=1):
    return {"inputs": [{"name": "input", "shape": [rows, FEATURES], "datatype": "FP32",
                        "data": [0.5] * (rows * FEATURES)}]}


def assert_error(status, body, want_status, fragment):
    assert status == want_status, (status, body)
    msg = json.loads(body)["error"]
    assert fragment in msg, msg


# --- health, metadata, config ------------------------------------------------------------------


def test_banner(server):
    assert "(HTTP, /metrics)" in server.banner


def test_live_ready(client, server):
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(MODEL)
    assert client.is_model_ready(MODEL, "1")
    assert not client.is_model_ready("nope")
    assert server.request("GET", "/v2/health/live")[2] == b'{"live":true}'
    assert server.request("GET", "/v2/health/ready")[2] == b'{"ready":true}'
    status, _, body = server.request("GET", "/v2/models/nope/ready")
    assert_error(status, body, 404, "nope")


def test_server_and_model_metadata(client):
    sm = client.get_server_metadata()
    assert sm["name"] == "kiln"
    assert {"binary_tensor_data", "statistics", "model_repository"} <= set(sm["extensions"])
    md = client.get_model_metadata(MODEL)
    assert md["name"] == MODEL and md["versions"] == ["1"]
    assert md["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, FEATURES]}]
    assert md["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}
    assert md["outputs"][1] == {"name": "class", "datatype": "INT64", "shape": [-1]}
    assert client.get_model_metadata(MODEL, "1")["name"] == MODEL
    with pytest.raises(InferenceServerException) as e:
        client.get_model_metadata(MODEL, "7")
    assert e.value.status() == "404"


def test_model_config(client):
    cfg = client.get_model_config(MODEL)
    assert cfg["name"] == MODEL
    assert cfg["max_batch_size"] == 256
    assert cfg["input"][0]["name"] == "input" and cfg["input"][0]["dims"] == [FEATURES]
    assert cfg["input"][0]["data_type"] == "TYPE_FP32"
    assert [o["name"] for o in cfg["output"]] == ["probabilities", "class"]
    assert cfg["output"][0]["dims"] == [3]
    assert "dynamic_batching" in cfg
    assert cfg["dynamic_batching"]["default_queue_policy"]["max_queue_size"] == 4096
    with pytest.raises(InferenceServerException) as e:
        client.get_model_config("nope")
    assert e.value.status() == "404"


# --- inference -----------------------------------------------------------------------------------


@pytest.mark.parametrize("binary", [True, False])
def test_infer_matches_kiln_predict(bundle, client, expected, binary):
    x = bundle[2]
    outs = [thttp.InferRequestedOutput("probabilities", binary_data=binary),
            thttp.InferRequestedOutput("class", binary_data=binary)]
    got_p, got_c = [], []
    for start in range(0, len(x), 64):  # max batch 256; several requests of up to 64 rows
        r = client.infer(MODEL, [fp32_input(x[start:start + 64], binary)], outputs=outs,
                         request_id=f"r{start}")
        assert r.get_response()["id"] == f"r{start}"
        assert r.get_response()["model_version"] == "1"
        got_p.append(r.as_numpy("probabilities"))
        got_c.append(r.as_numpy("class"))
    probs = np.concatenate(got_p)
    assert probs.dtype == np.float32 and probs.shape == expected.shape
    np.testing.assert_allclose(probs, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.concatenate(got_c), np.argmax(expected, axis=1))


def test_infer_default_outputs_binary(bundle, client, expected):
    # No outputs named: tritonclient asks for every output in binary (binary_data_output).
    r = client.infer(MODEL, [fp32_input(bundle[2][:5])])
    for o in r.get_response()["outputs"]:
        assert "binary_data_size" in o["parameters"]
    np.testing.assert_allclose(r.as_numpy("probabilities"), expected[:5], rtol=0, atol=1e-6)


def test_infer_plain_json_nested_and_version(bundle, server, expected):
    x = bundle[2][:3]
    body = {"id": "plain", "inputs": [{"name": "input", "shape": [3, FEATURES],
                                       "datatype": "FP32", "data": x.tolist()}],
            "outputs": [{"name": "class"}, {"name": "probabilities"}]}
    status, h, out = infer_json(server, body, f"/v2/models/{MODEL}/versions/1/infer")
    assert status == 200 and h["content-type"] == "application/json"
    assert "inference-header-content-length" not in h
    r = json.loads(out)
    assert r["id"] == "plain" and r["model_name"] == MODEL and r["model_version"] == "1"
    assert [o["name"] for o in r["outputs"]] == ["class", "probabilities"]
    assert r["outputs"][0]["shape"] == [3] and r["outputs"][0]["datatype"] == "INT64"
    np.testing.assert_array_equal(r["outputs"][0]["data"], np.argmax(expected[:3], axis=1))
    p = np.array(r["outputs"][1]["data"], dtype=np.float32).reshape(3, 3)
    np.testing.assert_allclose(p, expected[:3], rtol=0, atol=1e-6)


def test_binary_response_layout(bundle, server, expected):
    x = np.ascontiguousarray(bundle[2][:2], np.float32)
    head = json.dumps({"inputs": [{"name": "input", "shape": [2, FEATURES], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}],
                       "outputs": [{"name": "probabilities", "parameters": {"binary_data": True}},
                                   {"name": "class", "parameters": {"binary_data": True}}]})
    status, h, out = infer_json(server, head.encode() + x.tobytes(),
                                headers={"Inference-Header-Content-Length": str(len(head))})
    assert status == 200, out
    n = int(h["inference-header-content-length"])
    r = json.loads(out[:n])
    sizes = [o["parameters"]["binary_data_size"] for o in r["outputs"]]
    assert sizes == [2 * 3 * 4, 2 * 8] and len(out) == n + sum(sizes)
    probs = np.frombuffer(out[n:n + 24], "<f4").reshape(2, 3)
    cls = np.frombuffer(out[n + 24:], "<i8")
    np.testing.assert_allclose(probs, expected[:2], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(cls, np.argmax(expected[:2], axis=1))


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_compressed_request(bundle, client, expected, algorithm):
    r = client.infer(MODEL, [fp32_input(bundle[2][:4])], request_compression_algorithm=algorithm)
    np.testing.assert_allclose(r.as_numpy("probabilities"), expected[:4], rtol=0, atol=1e-6)


def test_chunked_upload(bundle, server, expected):
    x = bundle[2][:2]
    body = json.dumps({"inputs": [{"name": "input", "shape": [2, FEATURES], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    chunks = (body[i:i + 7] for i in range(0, len(body), 7))
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    c.request("POST", f"/v2/models/{MODEL}/infer", body=chunks, encode_chunked=True)
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    assert r.status == 200
    p = np.array(out["outputs"][0]["data"], np.float32).reshape(2, 3)
    np.testing.assert_allclose(p, expected[:2], rtol=0, atol=1e-6)


def test_concurrent_infer(bundle, server, expected):
    x = bundle[2]
    errors = []

    def work(k):
        try:
            c = thttp.InferenceServerClient(server.addr)
            for i in range(25):
                row = (k * 25 + i) % len(x)
                r = c.infer(MODEL, [fp32_input(x[row:row + 1])])
                np.testing.assert_allclose(r.as_numpy("probabilities")[0], expected[row],
                                           rtol=0, atol=1e-6)
            c.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    ts = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors[0]


# --- statistics, repository, metrics ---------------------------------------------------------


def test_statistics(client):
    before = client.get_inference_statistics(MODEL)["model_stats"][0]["inference_count"]
    client.infer(MODEL, [fp32_input(np.zeros((3, FEATURES), np.float32))])
    st = client.get_inference_statistics(MODEL, "1")["model_stats"]
    assert len(st) == 1 and st[0]["name"] == MODEL and st[0]["version"] == "1"
    assert st[0]["inference_count"] == before + 3
    s = st[0]["inference_stats"]
    assert s["success"]["count"] >= 1 and s["success"]["ns"] > 0
    assert {"queue", "compute_input", "compute_infer", "compute_output"} <= set(s)
    assert any(b["batch_size"] >= 1 for b in st[0]["batch_stats"])
    assert len(client.get_inference_statistics()["model_stats"]) == 1
    with pytest.raises(InferenceServerException) as e:
        client.get_inference_statistics("nope")
    assert e.value.status() == "404"


def test_repository_index_and_load(client, server):
    idx = client.get_model_repository_index()
    assert {"name": MODEL, "version": "1", "state": "READY"} in idx
    with pytest.raises(InferenceServerException) as e:
        client.load_model("nope")
    assert e.value.status() == "404"
    status, _, body = server.request("POST", "/v2/repository/models/x/load",
                                     json.dumps({"parameters": {"config": "{}"}}))
    assert_error(status, body, 400, "not supported")
    status, _, body = server.request("POST", "/v2/repository/index", '{"ready": 3}')
    assert_error(status, body, 400, "ready")


def parse_metrics(text):
    """Prometheus text format 0.0.4, by hand: {(name, frozenset(labels)): value}, and the TYPE of
    every family. Every line must be a comment or a well-formed sample."""
    sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
    label = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(,|$)')
    values, types = {}, {}
    for line in text.splitlines():
        if not line:
            continue
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#"):
            continue
        m = sample.match(line)
        assert m, f"bad metrics line: {line!r}"
        labels, rest = [], m.group(2) or ""
        while rest:
            lm = label.match(rest)
            assert lm, f"bad labels in {line!r}"
            labels.append((lm.group(1), lm.group(2)))
            rest = rest[lm.end():]
        values[(m.group(1), frozenset(labels))] = float(m.group(3))
    return values, types


def metric_sum(values, name, **labels):
    want = set(labels.items())
    return sum(v for (n, ls), v in values.items() if n == name and want <= ls)


def test_metrics_parse_and_move(client, server):
    status, h, body = server.request("GET", "/metrics")
    assert status == 200 and h["content-type"].startswith("text/plain; version=0.0.4")
    before, types = parse_metrics(body.decode())
    assert types, "no metric families"
    assert any(n.startswith("kiln_") for n in types), sorted(types)
    counters = [n for n, t in types.items() if t == "counter"]
    assert counters
    client.infer(MODEL, [fp32_input(np.ones((4, FEATURES), np.float32))])
    client.infer(MODEL, [fp32_input(np.ones((2, FEATURES), np.float32))])
    after, _ = parse_metrics(server.request("GET", "/metrics")[2].decode())
    moved = [n for n in counters
             if metric_sum(after, n, model=MODEL) > metric_sum(before, n, model=MODEL)]
    assert moved, "no counter moved after two requests"
    for n, t in types.items():  # histograms: cumulative buckets ending in +Inf == _count
        if t != "histogram":
            continue
        buckets = [(ls, v) for (m, ls), v in after.items() if m == n + "_bucket"]
        for ls, v in buckets:
            if ("le", "+Inf") in ls:
                rest = frozenset(x for x in ls if x[0] != "le")
                assert after[(n + "_count", rest)] == v


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        ("{", 400, "malformed JSON"),
        ("[]", 400, "must be a JSON object"),
        ({"inputs": []}, 400, "request has 0 inputs"),
        ({"inputs": [{"name": "input", "shape": [1, 5], "datatype": "FP32", "data": [1] * 5}]},
         400, "5 features, expected 6"),
        ({"inputs": [{"name": "input", "shape": [1, 6], "datatype": "INT32", "data": [1] * 6}]},
         400, 'datatype "INT32", expected "FP32"'),
        ({"inputs": [{"name": "input", "shape": [0, 6], "datatype": "FP32", "data": []}]},
         400, "empty batch"),
        ({"inputs": [{"name": "input", "shape": [1, 6], "datatype": "FP32", "data": [1] * 5}]},
         400, '"data" holds 5 values'),
        ({"inputs": [{"name": "input", "shape": [300, 6], "datatype": "FP32", "data": [1]}]},
         400, "exceeds the model's max batch size 256"),
        (dict(good_body(), outputs=[{"name": "logits"}]), 400, 'unknown output "logits"'),
        (dict(good_body(), parameters={"priority": -1}), 400, "must be >= 0"),
    ],
)
def test_malformed_infer(server, body, status, fragment):
    st, _, out = infer_json(server, body)
    assert_error(st, out, status, fragment)


def test_binary_header_errors(server):
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 24}}]}).encode()
    st, _, out = infer_json(server, head + bytes(24),
                            headers={"Inference-Header-Content-Length": "x"})
    assert_error(st, out, 400, "is not a byte count")
    st, _, out = infer_json(server, head + bytes(20),
                            headers={"Inference-Header-Content-Length": str(len(head))})
    assert_error(st, out, 400, "only 20 bytes follow")
    st, _, out = infer_json(server, head + bytes(24))
    assert_error(st, out, 400, "no Inference-Header-Content-Length")


def test_not_found_and_method(server):
    st, _, out = infer_json(server, good_body(), "/v2/models/nope/infer")
    assert_error(st, out, 404, 'unknown model "nope"')
    st, _, out = infer_json(server, good_body(), f"/v2/models/{MODEL}/versions/9/infer")
    assert_error(st, out, 404, "9")
    st, _, out = server.request("GET", "/v2/nothing/here")
    assert_error(st, out, 404, "unknown route")
    st, h, out = server.request("GET", f"/v2/models/{MODEL}/infer")
    assert_error(st, out, 405, "method not allowed")
    assert h["allow"] == "POST"
    st, h, out = server.request("DELETE", "/v2/health/live")
    assert st == 405 and "GET" in h["allow"]
    st, _, out = infer_json(server, gzip.compress(b"{}"), headers={"Content-Encoding": "br"})
    assert_error(st, out, 415, "Content-Encoding")
    st, _, out = infer_json(server, b"not gzip", headers={"Content-Encoding": "gzip"})
    assert_error(st, out, 400, "decompress")


def test_body_too_large(server):
    # Content-Length over the limit: answered before the body is read.
    c = http.client.HTTPConnection(server.host, server.port, timeout=30)
    c.putrequest("POST", f"/v2/models/{MODEL}/infer")
    c.putheader("Content-Length", str(MAX_BODY + 1))
    c.endheaders()
    r = c.getresponse()
    assert_error(r.status, r.read(), 413, "exceeds the limit")
    c.close()
    # Chunked past the limit: read to the end, then refused.
    chunk = b" " * (1 << 20)
    c = http.client.HTTPConnection(server.host, server.port, timeout=60)
    c.request("POST", f"/v2/models/{MODEL}/infer", body=(chunk for _ in range(65)),
              encode_chunked=True)
    r = c.getresponse()
    assert_error(r.status, r.read(), 413, "exceeds the limit")
    c.close()
    # a gzip bomb is measured after decompression
    bomb = gzip.compress(b" " * (MAX_BODY + 10))
    st, _, out = infer_json(server, bomb, headers={"Content-Encoding": "gzip"})
    assert_error(st, out, 413, "too large")


def test_queue_full_and_deadline(bundle):
    # One queued request at most, held up to 300 ms for its batch: more at once are refused;
    # a request with a 1 ms timeout expires in the queue.
    s = HttpServer(f"{MODEL}={bundle[3]}",
                   extra=["--max-queue-size", "1", "--max-queue-delay-us", "300000"])
    try:
        codes = []

        def go():
            codes.append(infer_json(s, good_body())[0])

        ts = [threading.Thread(target=go) for _ in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert 200 in codes and 429 in codes, codes
        st, _, out = infer_json(s, dict(good_body(), parameters={"timeout": 1000}))
        assert_error(st, out, 504, "timed out")
    finally:
        assert s.stop() == 0


def test_random_requests_never_crash(server, client):
    rng = random.Random(7)
    paths = ["/v2", "/v2/models", f"/v2/models/{MODEL}", f"/v2/models/{MODEL}/infer",
             f"/v2/models/{MODEL}/versions/1/infer", f"/v2/models/{MODEL}/config", "/metrics",
             "/v2/repository/index", "/v2/models/stats", "/v2/health/ready", "/", "//v2//models",
             "/v2/models/%00/infer", "/v2/models/" + "a" * 3000, "/v2/repository/models/x/unload"]
    seed = json.dumps(dict(good_body(2), outputs=[{"name": "class"}], id="f")).encode()
    for i in range(300):
        method = rng.choice(["GET", "POST", "POST", "POST", "PUT", "HEAD", "OPTIONS"])
        path = rng.choice(paths)
        if rng.random() < 0.2:
            path += "/" + "".join(rng.choice("abc/%.?") for _ in range(rng.randint(1, 20)))
        kind = rng.random()
        if kind < 0.4:  # mutated good body
            b = bytearray(seed)
            for _ in range(rng.randint(1, 6)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            body = bytes(b)
        elif kind < 0.7:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 400)))
        else:
            body = seed[:rng.randint(0, len(seed))]
        headers = {}
        if rng.random() < 0.3:
            headers["Inference-Header-Content-Length"] = str(rng.randint(-5, len(body) + 5))
        if rng.random() < 0.05:
            headers["Content-Encoding"] = rng.choice(["gzip", "deflate", "zstd"])
        try:
            st, _, out = server.request(method, path, body if method != "GET" else None, headers)
        except (http.client.HTTPException, ConnectionError) as e:
            raise AssertionError(f"request {i} {method} {path}: {e!r}")
        assert st in (200, 400, 404, 405, 413, 415, 503), (i, method, path, st, out[:200])
        if st >= 400 and method != "HEAD":
            assert "error" in json.loads(out)
    # raw garbage on the socket
    for _ in range(20):
        with socket.create_connection((server.host, server.port), timeout=10) as sk:
            sk.sendall(bytes(rng.randrange(256) for _ in range(rng.randint(1, 300))) + b"\r\n\r\n")
            try:
                sk.recv(4096)
            except OSError:
                pass
    assert client.is_server_ready()
    r = client.infer(MODEL, [fp32_input(np.zeros((1, FEATURES), np.float32))])
    assert r.as_numpy("class").shape == (1,)


def test_port_in_use(bundle, server):
    p = run_kiln("serve", "--model", f"{MODEL}={bundle[3]}", "--port", _free_port(),
                 "--http-port", server.port, check=False, timeout=60)
    assert p.returncode == 1
    assert "Address already in use" in p.stderr


def test_sigterm_answers_in_flight(bundle):
    # A request waiting for its batch (300 ms delay) when SIGTERM arrives is still answered.
    s = HttpServer(f"{MODEL}={bundle[3]}", extra=["--max-queue-delay-us", "300000",
                                                  "--preferred-batch", "64"])
    result = {}

    def go():
        result["r"] = infer_json(s, good_body())

    t = threading.Thread(target=go)
    t.start()
    time.sleep(0.1)
    assert s.stop() == 0
    t.join(timeout=30)
    assert result["r"][0] == 200, result
