"""Live drift in `kiln serve` (--drift-window, --drift-interval): the gauges on /metrics equal
`kiln monitor report` on the same rows (logged by --prediction-log), held-out rows of the training
distribution read as stable and shifted ones as a large shift; only the top features by PSI are
listed; a bundle without a reference profile gets no gauges; a repository version loaded and
unloaded at runtime gains and loses its gauges."""

import json
import re
import shutil
import time
import urllib.request

import numpy as np
import pytest

from conftest import FEATURES, KilnServe, drift_data, run_kiln

TRAIN, WINDOW = 800, 400
SHIFT = {0: 1.5, 3: -2.0}  # feature -> shift in its standard deviations
PER_REQUEST = 8
GAUGES = ("kiln_drift_psi_max", "kiln_drift_ks_max", "kiln_drift_prediction_psi")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(folder, held-out rows, shifted rows, bundle): a classifier trained on TRAIN rows (no
    validation split, so the profile is of exactly those rows)."""
    d = tmp_path_factory.mktemp("driftsrv")
    _, held, shifted = drift_data(d, TRAIN, WINDOW, WINDOW, SHIFT)
    return d, held, shifted, d / "model"


class Server(KilnServe):
    def __init__(self, *args, models=(), env=None):
        super().__init__("--http-port", "0", *args, models=models, env=env)
        m = re.search(r"([0-9.]+):(\d+) \(HTTP", self.banner)
        self.http = f"{m.group(1)}:{m.group(2)}"

    def post(self, path, body):
        req = urllib.request.Request(f"http://{self.http}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")

    def send(self, model, rows):
        for s in range(0, len(rows), PER_REQUEST):
            r = np.ascontiguousarray(rows[s : s + PER_REQUEST], dtype=np.float32)
            self.post(f"/v2/models/{model}/infer",
                      {"inputs": [{"name": "input", "datatype": "FP32", "shape": list(r.shape),
                                   "data": r.flatten().tolist()}]})

    def metrics(self):
        with urllib.request.urlopen(f"http://{self.http}/metrics", timeout=30) as r:
            return r.read().decode()


def samples(text, name, **labels):
    """{labels: value} of every sample of metric `name` matching labels."""
    out = {}
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        got = dict(re.findall(r'(\w+)="([^"]*)"', line[len(name) : line.rindex("}") + 1]))
        if all(got.get(k) == v for k, v in labels.items()):
            out[tuple(sorted(got.items()))] = float(line.rsplit(" ", 1)[1])
    return out


def value(text, name, **labels):
    s = samples(text, name, **labels)
    assert len(s) <= 1, s
    return next(iter(s.values())) if s else None


def settled(s, want_rows, model="m", timeout=30):
    """The /metrics page once the window holds want_rows rows and two recomputations have run
    since the last request (so the statistics are of exactly those rows)."""
    end = time.time() + timeout
    while time.time() < end:
        if value(s.metrics(), "kiln_drift_window_rows", model=model) == want_rows:
            time.sleep(0.5)  # --drift-interval 0.2: at least two sweeps after the last add
            return s.metrics()
        time.sleep(0.1)
    raise AssertionError(f"the drift window never held {want_rows} rows:\n{s.metrics()}")


def report(d, log_lines, name):
    """`kiln monitor report` (drift.json) over the given prediction log lines."""
    log = d / f"{name}.jsonl"
    log.write_text("".join(log_lines))
    run_kiln("monitor", "report", "--log", log, "--model", d / "model", "--out", d / name)
    return json.loads((d / name / "drift.json").read_text())


def test_gauges_equal_the_offline_report(setup):
    d, held, shifted, model = setup
    logdir = d / "log"
    s = Server("--drift-window", str(WINDOW), "--drift-interval", "0.2", "--prediction-log",
               logdir, models=[f"m={model}"])
    try:
        page = s.metrics()
        assert value(page, "kiln_drift_window_rows", model="m", version="1") == 0
        for g in GAUGES:  # no statistics of an empty window
            assert value(page, g, model="m") is None, g

        s.send("m", held)
        stable = settled(s, WINDOW)
        assert value(stable, "kiln_drift_psi_max", model="m", version="1") < 0.1
        feats = samples(stable, "kiln_drift_psi", model="m", version="1")
        assert 1 <= len(feats) <= min(FEATURES, 10)

        s.send("m", shifted)  # fills the window with shifted rows only
        end = time.time() + 30
        while value(s.metrics(), "kiln_drift_psi_max", model="m") <= 0.25:
            assert time.time() < end, s.metrics()
            time.sleep(0.1)
        time.sleep(0.5)
        drifted = s.metrics()
        assert value(drifted, "kiln_drift_window_rows", model="m") == WINDOW
        feats = samples(drifted, "kiln_drift_psi", model="m", version="1")
        top = sorted(feats.items(), key=lambda kv: -kv[1])[: len(SHIFT)]
        assert {dict(k)["feature"] for k, _ in top} == {f"f{j}" for j in SHIFT}
    finally:
        assert s.stop() == 0

    lines = []
    for f in sorted(logdir.glob("predictions-*.jsonl")):
        lines += [ln + "\n" for ln in f.read_text().splitlines()]
    per_window = WINDOW // PER_REQUEST
    assert len(lines) == 2 * per_window
    for page, part, name in ((stable, lines[:per_window], "held"),
                             (drifted, lines[per_window:], "shifted")):
        rep = report(d, part, name)
        assert rep["rows"] == WINDOW
        want = {"kiln_drift_psi_max": rep["max_psi"], "kiln_drift_ks_max": rep["max_ks"],
                "kiln_drift_prediction_psi": rep["prediction"]["psi"]}
        for g, w in want.items():
            assert value(page, g, model="m", version="1") == pytest.approx(w, abs=1e-6), (name, g)
        for f in rep["features"]:
            got = value(page, "kiln_drift_psi", model="m", version="1", feature=f["name"])
            if got is not None:
                assert got == pytest.approx(f["psi"], abs=1e-6), (name, f)
    assert want["kiln_drift_psi_max"] > 0.25


def test_no_reference_no_gauges_and_window_off(setup, tmp_path):
    d, held, _, model = setup
    old = tmp_path / "old"
    shutil.copytree(model, old)
    meta = json.loads((old / "kiln.json").read_text())
    del meta["reference"]
    (old / "kiln.json").write_text(json.dumps(meta))
    s = Server("--drift-interval", "0.2", models=[f"old={old}", f"m={model}"])
    try:
        s.send("old", held[:16])
        s.send("m", held[:16])
        settled(s, 16)
        page = s.metrics()
        assert samples(page, "kiln_drift_window_rows", model="old") == {}
        assert value(page, "kiln_drift_window_rows", model="m") == 16
    finally:
        assert s.stop() == 0
    err = s.proc.stderr.read()
    assert err.count("no reference profile") == 1, err

    s = Server("--drift-window", "0", models=[f"m={model}"])
    try:
        s.send("m", held[:16])
        assert "kiln_drift" not in s.metrics()
    finally:
        assert s.stop() == 0


def test_runtime_load_and_unload(setup, tmp_path):
    d, held, _, model = setup
    repo = tmp_path / "repo"
    shutil.copytree(model, repo / "toy" / "1")
    s = Server("--repository", repo, "--explicit", "--drift-interval", "0.2")
    try:
        assert "kiln_drift" not in s.metrics()
        s.post("/v2/repository/models/toy/load", {})
        s.send("toy", held[:24])
        page = settled(s, 24, model="toy")
        assert value(page, "kiln_drift_psi_max", model="toy", version="1") is not None
        s.post("/v2/repository/models/toy/unload", {})
        end = time.time() + 30
        while "kiln_drift" in s.metrics():
            assert time.time() < end, s.metrics()
            time.sleep(0.1)
        s.post("/v2/repository/models/toy/load", {})  # back, with a fresh window
        s.send("toy", held[:8])
        settled(s, 8, model="toy")
    finally:
        assert s.stop() == 0
