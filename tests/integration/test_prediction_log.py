"""The serving prediction log and feedback (`kiln serve --prediction-log`, `kiln feedback`):
records written exactly as sent and answered over gRPC and HTTP, sampling by request id, file
rotation, the SQLite and PostgreSQL sinks, a full queue dropping without failing requests,
feedback by REST, by request parameter and by `kiln feedback`, and live accuracy equal to the
offline evaluation of the same rows."""

import csv
import json
import re
import sqlite3
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

from conftest import FEATURES, KILN, KilnServe, run_kiln, small_bundle

tgrpc = pytest.importorskip("tritonclient.grpc", reason="tritonclient is not installed")
thttp = pytest.importorskip("tritonclient.http", reason="tritonclient is not installed")
from test_predict_sql import pg  # noqa: E402,F401  (the PostgreSQL server fixture)

M64 = (1 << 64) - 1


def id_hash(s):
    """kiln's sampling hash of a request id: FNV-1a, then splitmix64's finaliser."""
    h = 1469598103934665603
    for b in s.encode():
        h = ((h ^ b) * 1099511628211) & M64
    h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & M64
    h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & M64
    return h ^ (h >> 31)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return small_bundle(tmp_path_factory.mktemp("predlog"))


class Server(KilnServe):
    """`kiln serve` of the small bundle as model "toy" with an HTTP port and a prediction log."""

    def __init__(self, bundle, *extra):
        super().__init__("--http-port", "0", *extra, models=[f"toy={bundle[3]}"])
        m = re.search(r"([0-9.]+):(\d+) \(HTTP", self.banner)
        self.http = f"{m.group(1)}:{m.group(2)}"

    def post(self, path, body):
        """(status, parsed JSON answer) of a POST."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(f"http://{self.http}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def infer(self, rows, rid=None, labels=None):
        """REST inference of rows; returns (id, probabilities)."""
        body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(rows.shape),
                            "data": rows.flatten().tolist()}]}
        if rid is not None:
            body["id"] = rid
        if labels is not None:
            body["parameters"] = {"labels": labels}
        status, a = self.post("/v2/models/toy/infer", body)
        assert status == 200, a
        out = {o["name"]: o for o in a["outputs"]}
        p = np.array(out["probabilities"]["data"], dtype=np.float32).reshape(rows.shape[0], -1)
        return a.get("id", ""), p

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=30) as r:
            return r.read().decode()


def metric(text, name, **labels):
    """The value of one sample of the /metrics page, or None."""
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name):line.rindex("}") + 1]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def read_log(d):
    """Every record of the JSONL files in d, oldest file first."""
    out = []
    for f in sorted(d.glob("predictions-*.jsonl")):
        out += [json.loads(line) for line in f.read_text().splitlines()]
    return out


def rows_of(x, i, n):
    return np.ascontiguousarray(x[i:i + n], dtype=np.float32)


def test_records_exact_over_grpc_and_http(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log)
    try:
        sent = {}
        g = tgrpc.InferenceServerClient(s.addr)
        for k, (i, n) in enumerate([(0, 3), (10, 1)]):
            inp = tgrpc.InferInput("input", [n, FEATURES], "FP32")
            inp.set_data_from_numpy(rows_of(x, i, n))
            r = g.infer("toy", [inp], request_id=f"g{k}")
            assert r.get_response().id == f"g{k}"
            sent[f"g{k}"] = (rows_of(x, i, n), r.as_numpy("probabilities"))
        # No id: the server makes one and answers it.
        inp = tgrpc.InferInput("input", [2, FEATURES], "FP32")
        inp.set_data_from_numpy(rows_of(x, 20, 2))
        r = g.infer("toy", [inp])
        gen = r.get_response().id
        assert gen.startswith("kiln-")
        sent[gen] = (rows_of(x, 20, 2), r.as_numpy("probabilities"))
        h = thttp.InferenceServerClient(s.http)
        inp = thttp.InferInput("input", [4, FEATURES], "FP32")
        inp.set_data_from_numpy(rows_of(x, 30, 4), binary_data=True)
        r = h.infer("toy", [inp], request_id="h0")
        assert r.get_response()["id"] == "h0"
        sent["h0"] = (rows_of(x, 30, 4), r.as_numpy("probabilities"))
        rid, p = s.infer(rows_of(x, 40, 2))  # JSON, no id
        assert rid.startswith("kiln-") and rid != gen
        sent[rid] = (rows_of(x, 40, 2), p)
    finally:
        assert s.stop() == 0
    recs = read_log(log)
    assert len(recs) == len(sent)
    for rec in recs:
        assert rec["type"] == "prediction" and rec["model"] == "toy" and rec["version"] == "1"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", rec["time"])
        inputs, probs = sent[rec["request_id"]]
        np.testing.assert_array_equal(np.array(rec["inputs"], dtype=np.float32), inputs)
        np.testing.assert_array_equal(np.array(rec["outputs"], dtype=np.float32), probs)


def test_sampling_by_request_id(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log, "--prediction-log-sample", "0.5")
    ids = [f"req-{i}" for i in range(200)]
    try:
        for i, rid in enumerate(ids):
            s.infer(rows_of(x, i % 150, 1), rid)
    finally:
        assert s.stop() == 0
    logged = {r["request_id"] for r in read_log(log)}
    expected = {rid for rid in ids if id_hash(rid) < 1 << 63}
    assert logged == expected  # deterministic by id: the same ids every time
    assert 70 <= len(logged) <= 130, len(logged)


def test_rotation_keeps_the_newest_files(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log, "--prediction-log-file-kb", "4",
               "--prediction-log-files", "3")
    try:
        for i in range(120):
            s.infer(rows_of(x, i, 5), f"rot-{i}")
    finally:
        assert s.stop() == 0
    files = sorted(log.glob("predictions-*.jsonl"))
    nums = [int(f.name[12:18]) for f in files]
    assert len(files) == 3 and nums == list(range(nums[0], nums[0] + 3)) and nums[0] > 3, nums
    assert all(f.stat().st_size <= 4096 for f in files)
    recs = read_log(log)
    ids = [r["request_id"] for r in recs]
    assert ids == [f"rot-{i}" for i in range(120 - len(ids), 120)]  # the newest, in order


def test_sqlite_sink(bundle, tmp_path):
    _, _, x, _ = bundle
    db = tmp_path / "log.db"
    s = Server(bundle, "--prediction-log", f"sqlite:{db}?table=plog")
    try:
        _, p0 = s.infer(rows_of(x, 0, 2), "s0")
        _, p1 = s.infer(rows_of(x, 5, 1), "s1", labels=[2])
        assert s.post("/v2/models/toy/feedback", {"request_id": "s0", "labels": [0, 1]})[0] == 200
    finally:
        assert s.stop() == 0
    con = sqlite3.connect(db)
    rows = con.execute("SELECT type, request_id, model, version, inputs, outputs, labels "
                       "FROM plog ORDER BY id").fetchall()
    assert [(r[0], r[1]) for r in rows] == [("prediction", "s0"), ("prediction", "s1"),
                                            ("feedback", "s1"), ("feedback", "s0")]
    np.testing.assert_array_equal(np.array(json.loads(rows[0][4]), dtype=np.float32),
                                  rows_of(x, 0, 2))
    np.testing.assert_array_equal(np.array(json.loads(rows[1][5]), dtype=np.float32), p1)
    assert json.loads(rows[2][6]) == [2] and json.loads(rows[3][6]) == [0, 1]
    assert rows[3][4] is None and all(r[2] == "toy" and r[3] == "1" for r in rows)


def test_postgres_sink(bundle, pg):  # noqa: F811
    _, _, x, _ = bundle
    s = Server(bundle, "--prediction-log", f"{pg.uri}?table=plog")
    try:
        _, p = s.infer(rows_of(x, 0, 3), "pg0")
        assert s.post("/v2/feedback", {"request_id": "pg0", "labels": [1, 1, 0]})[0] == 200
    finally:
        assert s.stop() == 0
    rows = pg.sql("SELECT type, request_id, model, version, outputs::text, labels::text "
                  "FROM plog ORDER BY id")
    assert [r[:4] for r in rows] == [["prediction", "pg0", "toy", "1"],
                                     ["feedback", "pg0", "toy", "1"]]
    np.testing.assert_array_equal(np.array(json.loads(rows[0][4]), dtype=np.float32), p)
    assert json.loads(rows[1][5]) == [1, 1, 0]


def test_full_queue_drops_and_every_request_is_answered(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    # 1 KiB holds one record of 20 rows: records that arrive while the writer is busy drop.
    s = Server(bundle, "--prediction-log", log, "--prediction-log-queue-kb", "1",
               "--http-threads", "8")
    n_threads, per = 8, 40
    errors = []

    def client(t):
        try:
            for k in range(per):
                s.infer(rows_of(x, (t * 7 + k) % 150, 20), f"q{t}-{k}")
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    try:
        threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors[:3]
        m = s.metrics()
    finally:
        assert s.stop() == 0
    written = metric(m, "kiln_prediction_log_records_total", model="toy")
    dropped = metric(m, "kiln_prediction_log_dropped_total", model="toy")
    assert dropped > 0, m
    assert written + dropped == n_threads * per
    assert len(read_log(log)) == n_threads * per - dropped  # every accepted one written


def test_feedback_rest(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log)
    try:
        s.infer(rows_of(x, 0, 2), "f0")
        s.infer(rows_of(x, 2, 1), "f1")
        s.infer(rows_of(x, 3, 1), "f2")
        assert s.post("/v2/models/toy/feedback", {"request_id": "f0", "labels": [0, 2]}) == (
            200, {"accepted": 1, "rows": 2, "unknown": 0, "rejected": 0, "unknown_ids": [],
                  "errors": []})
        st, a = s.post("/v2/models/toy/feedback", {"request_id": "nope", "labels": [1]})
        assert st == 404 and "nope" in a["error"]
        st, a = s.post("/v2/models/other/feedback", {"request_id": "f1", "labels": [1]})
        assert st == 404  # another model's request
        bad = [
            (b"{not json", "malformed JSON feedback near byte"),
            ({"labels": [1]}, '"request_id" must be a non-empty string'),
            ({"request_id": "f1", "labels": "1"}, '"labels" must be an array of integers'),
            ({"request_id": "f1", "labels": [1.5]}, '"labels"[0] must be an integer >= 0'),
            ({"request_id": "f1"}, 'give exactly one of "labels"'),
            ([{"request_id": "f1", "label": 1}, {"request_id": 3, "label": 1}],
             'item 1: "request_id" must be a non-empty string'),
            ({"request_id": "f1", "labels": [1, 2]}, "2 labels for its 1 rows"),
            ({"request_id": "f0", "labels": [0, 2]}, "has labels already"),
        ]
        for body, msg in bad:
            st, a = s.post("/v2/models/toy/feedback", body)
            assert st == 400 and msg in a["error"], (body, a)
        # The malformed list joined nothing: f1 is still open.
        st, a = s.post("/v2/feedback", [{"request_id": "f1", "label": 1},
                                        {"request_id": "gone", "labels": [0]},
                                        {"request_id": "f2", "labels": [0, 0]}])
        assert st == 200 and (a["accepted"], a["rows"], a["unknown"], a["rejected"]) == (1, 1, 1, 1)
        assert a["unknown_ids"] == ["gone"] and "1 rows" in a["errors"][0]
        m = s.metrics()
        assert metric(m, "kiln_feedback_rows_total", model="toy", version="1") == 3
    finally:
        assert s.stop() == 0
    fb = [r for r in read_log(log) if r["type"] == "feedback"]
    assert [(r["request_id"], r["labels"], r["model"], r["version"]) for r in fb] == [
        ("f0", [0, 2], "toy", "1"), ("f1", [1], "toy", "1")]


def test_feedback_by_request_parameter(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log)
    try:
        s.infer(rows_of(x, 0, 2), "p0", labels=[1, 2])
        s.infer(rows_of(x, 2, 1), "p1", labels=0)
        s.infer(rows_of(x, 3, 3), "p2", labels="2, 0,1")
        g = tgrpc.InferenceServerClient(s.addr)
        inp = tgrpc.InferInput("input", [2, FEATURES], "FP32")
        inp.set_data_from_numpy(rows_of(x, 6, 2))
        g.infer("toy", [inp], request_id="p3", parameters={"labels": "0,1"})
        inp1 = tgrpc.InferInput("input", [1, FEATURES], "FP32")
        inp1.set_data_from_numpy(rows_of(x, 8, 1))
        g.infer("toy", [inp1], request_id="p4", parameters={"label": 2})
        with pytest.raises(Exception, match="2 labels for 3 rows"):
            s.infer(rows_of(x, 0, 3), "bad", labels=[1, 2])
        with pytest.raises(tgrpc.InferenceServerException, match="more labels than the 2 rows"):
            g.infer("toy", [inp], request_id="bad2", parameters={"labels": "0,1,2"})
        m = s.metrics()
        assert metric(m, "kiln_feedback_rows_total", model="toy", version="1") == 9
    finally:
        assert s.stop() == 0
    fb = {r["request_id"]: r["labels"] for r in read_log(log) if r["type"] == "feedback"}
    assert fb == {"p0": [1, 2], "p1": [0], "p2": [2, 0, 1], "p3": [0, 1], "p4": [2]}


def test_feedback_command(bundle, tmp_path):
    _, _, x, _ = bundle
    log = tmp_path / "log"
    s = Server(bundle, "--prediction-log", log)
    try:
        for i in range(6):
            s.infer(rows_of(x, i * 2, 2), f"c{i}")
        f = tmp_path / "fb.csv"
        f.write_text("request_id,label\nc0,1,2\nc1,0,0\nunknown-id,1,1\nc2,x\n\nc3,1\n")
        p = run_kiln("feedback", f, "--url", f"http://{s.http}", "--model", "toy")
        assert "2 accepted (4 rows), 1 unknown, 1 rejected, 1 malformed" in p.stdout, p.stdout
        j = tmp_path / "fb.jsonl"
        j.write_text('{"request_id":"c4","labels":[1,1]}\n{"request_id":"c5","labels":[0,2]}\n'
                     '{"request_id":"c4","labels":[1,1]}\n{"labels":[1]}\n')
        p = run_kiln("feedback", j, "--url", f"http://{s.http}")
        assert "2 accepted (4 rows), 0 unknown, 1 rejected, 1 malformed" in p.stdout, p.stdout
        bad = run_kiln("feedback", j, "--url", "http://127.0.0.1:1", check=False)
        assert bad.returncode == 1
    finally:
        assert s.stop() == 0
    fb = {r["request_id"]: r["labels"] for r in read_log(log) if r["type"] == "feedback"}
    assert fb == {"c0": [1, 2], "c1": [0, 0], "c4": [1, 1], "c5": [0, 2]}


def test_live_accuracy_equals_offline_evaluation(bundle, tmp_path):
    """Rows served, their true labels posted: the live accuracy gauges equal the accuracy of
    `kiln predict` (offline, the batch path) on the same rows, computed by numpy."""
    _, data, _, model = bundle
    held = tmp_path / "held.csv"
    with open(data, newline="") as f:
        lines = list(csv.reader(f))
    with open(held, "w", newline="") as f:
        csv.writer(f).writerows(lines[:199])  # the header and 198 rows: 33 requests of 6
    rows = lines[1:199]
    xs = np.array([[float(v) for v in r[:FEATURES]] for r in rows], dtype=np.float32)
    names = json.loads((model / "kiln.json").read_text())["labels"]
    truth = np.array([names.index(r[FEATURES]) for r in rows])
    preds = tmp_path / "preds.csv"
    run_kiln("predict", "--model", model, "--input", held, "--output", preds)
    with open(preds, newline="") as f:
        offline = np.array([names.index(r[1]) for r in list(csv.reader(f))[1:]])
    window = 100
    s = Server(bundle, "--prediction-log", tmp_path / "log", "--accuracy-window", str(window))
    try:
        ids = []
        for i in range(0, len(xs), 6):
            ids.append(s.infer(xs[i:i + 6])[0])  # server-made ids, as a client would keep them
        fb = [{"request_id": rid, "labels": truth[k * 6:k * 6 + 6].tolist()}
              for k, rid in enumerate(ids)]
        st, a = s.post("/v2/models/toy/feedback", fb)
        assert st == 200 and a["accepted"] == len(ids) and a["rows"] == len(xs)
        m = s.metrics()
    finally:
        assert s.stop() == 0
    acc_all = float(np.mean(offline == truth))
    acc_win = float(np.mean(offline[-window:] == truth[-window:]))
    assert 0.3 < acc_all <= 1.0
    assert metric(m, "kiln_live_accuracy", model="toy", version="1", window="all") == \
        pytest.approx(acc_all, abs=1e-12)
    assert metric(m, "kiln_live_accuracy", model="toy", version="1", window=str(window)) == \
        pytest.approx(acc_win, abs=1e-12)
    assert metric(m, "kiln_feedback_rows_total", model="toy", version="1") == len(xs)
    assert metric(m, "kiln_feedback_correct_total", model="toy", version="1") == \
        int(np.sum(offline == truth))


def test_serve_help_documents_the_options():
    p = run_kiln("serve", "--help")
    for opt in ["--prediction-log", "--prediction-log-sample", "--prediction-log-queue-kb",
                "--prediction-log-file-kb", "--prediction-log-files", "--feedback-join-rows",
                "--accuracy-window"]:
        assert opt in p.stdout
    assert KILN.exists()
