"""`kiln monitor report` and the bundle's reference profile, against numpy and scipy.

A 3-class CSV (conftest.write_dataset) is cut in three: 800 rows train a classifier with
data.val_fraction 0, so the training split is that whole file and kiln.json's reference must hold
numpy.percentile of its raw (untransformed) columns; 400 held-out rows of the same distribution;
400 more with two features shifted. Their probabilities come from `kiln predict`, and a
prediction log (the server's JSONL format) is written by hand. For every feature the report's
PSI must equal a numpy implementation over kiln.json's bins and its KS statistic
scipy.stats.kstest against np.interp through kiln.json's 101 quantiles, within 1e-6; the
held-out rows must show PSI < 0.1 everywhere and the shifted ones > 0.25 where shifted.
Also: the prediction PSI, the report files, malformed lines counted and named FILE:LINE, and a
bundle without a profile (an older bundle) loading for `kiln predict` but refused here.
"""

import json
import shutil
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import FEATURES, LABELS, drift_data, run_kiln

stats = pytest.importorskip("scipy.stats", reason="scipy is not installed")

TRAIN, HELD, SHIFTED = 800, 400, 400
SHIFT = {0: 1.5, 3: -2.0}  # feature -> shift in its standard deviations


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("monitor")
    train, held, shifted = drift_data(d, TRAIN, HELD, SHIFTED, SHIFT)
    ref = json.loads((d / "model" / "kiln.json").read_text())["reference"]
    return d, train, held, shifted, ref


def class_names(d):
    """The bundle's classes, in the order of its outputs (CSV labels sort by name)."""
    names = json.loads((d / "model" / "kiln.json").read_text())["labels"]
    assert sorted(names) == sorted(LABELS)
    return names


def probabilities(d, rows, name):
    """`kiln predict`'s probabilities of rows (float32, as it prints them)."""
    path = d / f"{name}.csv"
    with open(path, "w") as f:
        f.write(",".join(f"f{j}" for j in range(FEATURES)) + "\n")
        for r in rows:
            f.write(",".join(repr(float(v)) for v in r) + "\n")
    out = run_kiln("predict", "--model", d / "model", "--input", path).stdout.splitlines()
    assert out[0].split(",")[2:] == [f"prob_{c}" for c in class_names(d)]
    return np.array([[float(v) for v in line.split(",")[2:]] for line in out[1:]], np.float32)


def record(i, rows, probs):
    """One prediction record of the log; float32 values written so they parse back exactly."""
    return json.dumps(
        {"type": "prediction", "time": "2026-11-28T19:30:00.123Z", "request_id": f"r{i}",
         "model": "m", "version": "1",
         "inputs": [[float(v) for v in r] for r in rows],
         "outputs": [[float(v) for v in p] for p in probs]}
    )


def write_log(path, rows, probs, per_record=7, extra=()):
    """rows in records of per_record rows; extra: (index, line) inserted at those lines."""
    lines = [record(i, rows[s : s + per_record], probs[s : s + per_record])
             for i, s in enumerate(range(0, len(rows), per_record))]
    for at, line in extra:
        lines.insert(at, line)
    path.write_text("\n".join(lines) + "\n")


def psi(expected, actual):
    e = np.maximum(np.asarray(expected, np.float64), 1e-4)
    a = np.maximum(np.asarray(actual, np.float64), 1e-4)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(f, w):
    """PSI of window values w over the profile's right-closed bins (-inf,e1], ..., (ek,inf)."""
    edges = np.asarray(f["edges"], np.float64)
    bins = np.searchsorted(edges, w.astype(np.float64), side="left")  # edges strictly below
    actual = np.bincount(bins, minlength=len(edges) + 1) / len(w)
    return psi(f["fractions"], actual)


def feature_ks(f, w):
    q = np.asarray(f["quantiles"], np.float64)
    cdf = lambda v: np.interp(v, q, np.arange(101) / 100.0)  # noqa: E731
    return stats.kstest(w.astype(np.float64), cdf).statistic


def report(d, log, *args, name="report"):
    out = d / name
    p = run_kiln("monitor", "report", "--log", log, "--model", d / "model", "--out", out, *args)
    return p, json.loads((out / "drift.json").read_text()), out


def test_reference_profile_matches_numpy(setup):
    d, train, _, _, ref = setup
    assert ref["version"] == 1 and ref["bins"] == "right-closed" and ref["rows"] == TRAIN
    assert len(ref["features"]) == FEATURES
    for j, f in enumerate(ref["features"]):
        col = train[:, j].astype(np.float64)
        want = np.percentile(col, np.arange(101))
        np.testing.assert_allclose(f["quantiles"], want, rtol=1e-6, atol=1e-9)
        edges = sorted(set(f["quantiles"][10:91:10]))
        assert f["edges"] == edges
        bins = np.searchsorted(np.asarray(edges), col, side="left")
        np.testing.assert_allclose(f["fractions"],
                                   np.bincount(bins, minlength=len(edges) + 1) / TRAIN, atol=1e-7)
    labels = [line.rsplit(",", 1)[1] for line in
              (d / "train.csv").read_text().splitlines()[1:]]
    prior = [labels.count(c) / TRAIN for c in class_names(d)]
    np.testing.assert_allclose(ref["class_prior"], prior, atol=1e-7)
    pp = ref["prediction_prior"]
    assert pp["split"] == "training" and pp["rows"] == TRAIN  # no validation split
    probs = probabilities(d, train, "train_rows")
    want = np.bincount(probs.argmax(1), minlength=len(LABELS)) / TRAIN
    np.testing.assert_allclose(pp["fractions"], want, atol=1e-7)


def test_held_out_and_shifted(setup):
    d, _, held, shifted, ref = setup
    ph, ps = probabilities(d, held, "held"), probabilities(d, shifted, "shifted")
    log = d / "log.jsonl"
    write_log(log, np.vstack([held, shifted]), np.vstack([ph, ps]))

    # Every row: numbers against numpy/scipy.
    p, rep, out = report(d, log, name="all")
    both, probs = np.vstack([held, shifted]), np.vstack([ph, ps])
    assert rep["rows"] == HELD + SHIFTED and rep["log_lines"]["skipped"] == 0
    for j, f in enumerate(rep["features"]):
        assert f["n"] == HELD + SHIFTED
        assert f["psi"] == pytest.approx(feature_psi(ref["features"][j], both[:, j]), abs=1e-6)
        assert f["ks"] == pytest.approx(feature_ks(ref["features"][j], both[:, j]), abs=1e-6)
    actual = np.bincount(probs.argmax(1), minlength=len(LABELS)) / len(probs)
    want_pred = psi(ref["prediction_prior"]["fractions"], actual)
    assert rep["prediction"]["psi"] == pytest.approx(want_pred, abs=1e-6)
    assert "top features by PSI" in p.stdout and "prediction PSI" in p.stdout
    for name in ("report.html", "drift.json", "psi.svg", "prediction.svg"):
        assert (out / name).stat().st_size > 0, name
    ET.parse(out / "psi.svg")
    ET.parse(out / "prediction.svg")
    html = (out / "report.html").read_text()
    assert "<svg" in html and "http" not in html.replace("http://www.w3.org/2000/svg", "")

    # The last 400 rows (the shifted ones): large PSI exactly where shifted.
    _, rep, _ = report(d, log, "--window", str(SHIFTED), name="shifted")
    assert rep["rows"] == SHIFTED
    for j, f in enumerate(rep["features"]):
        assert f["psi"] == pytest.approx(feature_psi(ref["features"][j], shifted[:, j]), abs=1e-6)
        assert f["ks"] == pytest.approx(feature_ks(ref["features"][j], shifted[:, j]), abs=1e-6)
        if j in SHIFT:
            assert f["psi"] > 0.25, (j, f)
        else:
            assert f["psi"] < 0.1, (j, f)
    assert set(rep["top_features"][: len(SHIFT)]) == set(SHIFT)


def test_held_out_is_stable_and_bad_lines_are_counted(setup):
    d, _, held, _, ref = setup
    ph = probabilities(d, held, "held2")
    log = d / "held.jsonl"
    feedback = json.dumps({"type": "feedback", "time": "2026-11-28T19:31:00Z",
                           "request_id": "r0", "model": "m", "labels": [1, 2]})
    narrow = record(99, held[:1, :3], ph[:1])
    write_log(log, held, ph, extra=[(1, "{not json"), (3, feedback), (5, narrow), (7, "")])
    p, rep, _ = report(d, log, name="held")
    assert f"{log}:2: not a JSON object" in p.stderr
    assert f"{log}:6: inputs[0]: expected an array of {FEATURES} numbers" in p.stderr
    assert "2 of" in p.stderr and "lines skipped" in p.stderr
    assert rep["log_lines"]["skipped"] == 2 and rep["log_lines"]["feedback_records"] == 1
    assert rep["rows"] == HELD
    for j, f in enumerate(rep["features"]):
        assert f["psi"] < 0.1, (j, f)
        assert f["psi"] == pytest.approx(feature_psi(ref["features"][j], held[:, j]), abs=1e-6)
        assert f["ks"] == pytest.approx(feature_ks(ref["features"][j], held[:, j]), abs=1e-6)
    assert rep["prediction"]["psi"] < 0.1


def test_bundle_without_reference(setup, tmp_path):
    d, _, held, _, _ = setup
    old = tmp_path / "old"
    shutil.copytree(d / "model", old)
    cfg = json.loads((old / "kiln.json").read_text())
    del cfg["reference"]
    (old / "kiln.json").write_text(json.dumps(cfg))
    run_kiln("predict", "--model", old, "--input", d / "train.csv")  # still a valid bundle
    write_log(tmp_path / "log.jsonl", held[:5], np.full((5, 3), 1 / 3, np.float32))
    p = run_kiln("monitor", "report", "--log", tmp_path / "log.jsonl", "--model", old,
                 "--out", tmp_path / "r", check=False)
    assert p.returncode == 1 and "no reference profile" in p.stderr
    p = run_kiln("monitor", "report", "--log", tmp_path / "missing.jsonl", "--model",
                 d / "model", check=False)
    assert p.returncode == 1 and "missing.jsonl" in p.stderr


def test_regression_prediction_profile(tmp_path):
    """A regression model: the prediction prior is the profile of its predictions on the
    training split, and the report's prediction PSI is over those bins."""
    rng = np.random.default_rng(3)
    x = np.round(rng.normal(size=(300, 3)), 4).astype(np.float32)
    y = x @ np.array([1, 2, -1], np.float32)
    with open(tmp_path / "reg.csv", "w") as f:
        f.write("a,b,c,target\n")
        for r, t in zip(x, y):
            f.write(",".join(repr(float(v)) for v in r) + f",{t:.4f}\n")
    (tmp_path / "r.yaml").write_text(
        f"data: {{format: csv, train: {tmp_path / 'reg.csv'}, label_column: target, "
        "val_fraction: 0.0, transform: standard}\n"
        "model: {layers: 3-8-1, activation: tanh, dropout: 0.0, task: regression}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 2, seed: 1, threads: 1}\n"
        f"output: {tmp_path / 'm'}\n"
    )
    run_kiln("train", "--config", tmp_path / "r.yaml")
    ref = json.loads((tmp_path / "m" / "kiln.json").read_text())["reference"]
    assert ref["class_prior"] is None
    out = run_kiln("predict", "--model", tmp_path / "m", "--input", tmp_path / "reg.csv").stdout
    pred = np.array([float(line.split(",")[1]) for line in out.splitlines()[1:]], np.float32)
    pp = ref["prediction_prior"]
    assert pp["split"] == "training" and pp["rows"] == 300
    np.testing.assert_allclose(pp["quantiles"], np.percentile(pred.astype(np.float64),
                                                              np.arange(101)), rtol=1e-6,
                               atol=1e-6)
    shifted = pred[:100] + np.float32(2)
    write_log(tmp_path / "log.jsonl", x[:100], shifted[:, None])
    p = run_kiln("monitor", "report", "--log", tmp_path / "log.jsonl", "--model", tmp_path / "m",
                 "--out", tmp_path / "rep")
    rep = json.loads((tmp_path / "rep" / "drift.json").read_text())
    assert rep["prediction"]["psi"] == pytest.approx(feature_psi(pp, shifted), abs=1e-6)
    assert rep["prediction"]["psi"] > 0.25 and "prediction PSI" in p.stdout


def test_log_directory_reads_the_rotated_files_in_order(setup, tmp_path):
    """--log DIR (what kiln serve --prediction-log DIR writes) reads its predictions-NNNNNN.jsonl
    files oldest first, as if they were one file; other files there are ignored; a directory
    without log files is an error that says what it expected."""
    d, _, held, shifted, _ = setup
    rows = np.concatenate([held[:100], shifted[:100]])
    probs = probabilities(d, rows, "dir")
    one = tmp_path / "one.jsonl"
    write_log(one, rows, probs)
    lines = one.read_text().splitlines(keepends=True)
    logdir = tmp_path / "log"
    logdir.mkdir()
    for k, part in enumerate([lines[:10], lines[10:20], lines[20:]]):
        (logdir / f"predictions-{k + 1:06d}.jsonl").write_text("".join(part))
    (logdir / "notes.txt").write_text("not a log\n")
    _, whole, _ = report(d, one, "--window", "150", name="from-file")
    _, split, _ = report(d, logdir, "--window", "150", name="from-dir")
    assert split["rows"] == whole["rows"] == 150  # the last 150: order matters
    assert split["features"] == whole["features"]
    empty = tmp_path / "empty"
    empty.mkdir()
    p = run_kiln("monitor", "report", "--log", empty, "--model", d / "model", check=False)
    assert p.returncode == 1 and "without predictions-NNNNNN.jsonl files" in p.stderr
