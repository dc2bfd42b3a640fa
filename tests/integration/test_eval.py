"""`kiln eval` against scikit-learn: every metric recomputed from the same predictions.

Two tiny models trained by `kiln train` on CSV data (3-class classification and regression).
`kiln eval` writes report.json; `kiln predict` writes the probabilities (or predictions) of the
same rows; scikit-learn 1.9 recomputes each metric from them and the two must agree to 1e-9
relative. kiln holds probabilities, predictions and regression targets as float32 and computes
in float64 from them; `kiln predict` prints float32 values with 9 significant digits, which
round-trip exactly, so the reference parses them back to float32 before widening to float64
(likewise the CSV's targets). ECE has no scikit-learn function: it is recomputed in numpy from
its definition in eval/metrics.h.

Also: the report files (SVGs parse as XML), the default output directory, the metrics and
artifacts in an MLflow run (new and existing), and malformed inputs failing with exit code 1.
"""

import csv
import gzip
import json
import os
import re
import subprocess
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import KILN, REPO, fmnist_or_skip, run_kiln

sk = pytest.importorskip("sklearn.metrics", reason="scikit-learn is not installed")

LABELS = ["red", "green", "blue"]
FEATURES = 6
REL = 1e-9


def write_csv(path, x, labels, label_name="label"):
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{j}" for j in range(x.shape[1])] + [label_name])
        for row, lab in zip(x, labels):
            out.writerow([f"{v:.4f}" for v in row] + [lab])


def make_data(d, seed=5):
    """Train and test CSVs for both tasks, drawn from one distribution."""
    rng = np.random.default_rng(seed)
    n = 400
    x = rng.normal(size=(n, FEATURES)) * rng.uniform(0.5, 20, size=FEATURES) + rng.uniform(
        -5, 5, size=FEATURES
    )
    x = np.round(x, 4)
    z = ((x - x.mean(0)) / x.std(0)) @ rng.normal(size=(FEATURES, 3))
    # Noise so that the model is imperfect and the classes overlap.
    zc = z + rng.normal(scale=0.8, size=z.shape)
    cls = [LABELS[int(np.argmax(r))] for r in zc]
    target = [f"{v:.5f}" for v in z[:, 0] * 3 + 1 + rng.normal(scale=0.5, size=n)]
    write_csv(d / "cls_train.csv", x[:280], cls[:280])
    write_csv(d / "cls_test.csv", x[280:], cls[280:])
    write_csv(d / "reg_train.csv", x[:280], target[:280], "y")
    write_csv(d / "reg_test.csv", x[280:], target[280:], "y")


def train(d, name, data, task, label):
    out_dim = 3 if task == "classification" else 1
    cfg = d / f"{name}.yaml"
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: {label}, val_fraction: 0.2, "
        "transform: standard}\n"
        f"model: {{layers: {FEATURES}-16-{out_dim}, activation: tanh, dropout: 0.0, "
        f"task: {task}}}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 4, seed: 1, threads: 1}\n"
        f"output: {d / name}\n"
    )
    run_kiln("train", "--config", cfg)
    return d / name


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("eval")
    make_data(d)
    cls = train(d, "cls_model", d / "cls_train.csv", "classification", "label")
    reg = train(d, "reg_model", d / "reg_train.csv", "regression", "y")
    return d, cls, reg


def f32(values):
    """float32 values as kiln holds them, widened to float64."""
    return np.asarray(values, dtype=np.float64).astype(np.float32).astype(np.float64)


def read_column(path, name):
    with open(path, newline="") as f:
        return [row[name] for row in csv.DictReader(f)]


def kiln_predict(d, model, data):
    preds = d / f"preds_{model.name}.csv"
    run_kiln("predict", "--model", model, "--input", data, "--output", preds)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], f32([[float(v) for v in r[2:]] if len(r) > 2 else [float(r[1])] for r in rows[1:]])


def kiln_eval(*args, **kw):
    return run_kiln("eval", *args, **kw)


def close(got, want, what):
    if want is None or (isinstance(want, float) and np.isnan(want)):
        assert got is None, f"{what}: kiln {got}, expected undefined"
        return
    assert got == pytest.approx(want, rel=REL, abs=1e-15), f"{what}: kiln {got!r}, sklearn {want!r}"


def sk_log_loss(y, probs, C):
    with warnings.catch_warnings():
        # float32 probabilities sum to one only within float32's precision; sklearn 1.9 warns
        # and uses them as they are (it no longer renormalises), as kiln does.
        warnings.simplefilter("ignore", UserWarning)
        return sk.log_loss(y, probs, labels=list(range(C)))


def ece_reference(probs, y):
    """ECE as eval/metrics.h defines it: 15 bins (b/15, (b+1)/15] of the max probability."""
    conf = probs.max(axis=1)
    hit = probs.argmax(axis=1) == y
    edges = [b / 15 for b in range(16)]
    total = 0.0
    for b in range(15):
        m = (conf > edges[b]) & (conf <= edges[b + 1]) if b else conf <= edges[1]
        if m.any():
            total += m.sum() / len(y) * abs(hit[m].mean() - conf[m].mean())
    return total


def test_classification_matches_sklearn(models):
    d, model, _ = models
    out = d / "cls_report"
    p = kiln_eval("--model", model, "--data", d / "cls_test.csv", "--train", d / "cls_train.csv",
                  "--out", out)
    assert "accuracy" in p.stdout and "macro_f1" in p.stdout
    rep = json.loads((out / "report.json").read_text())
    header, probs = kiln_predict(d, model, d / "cls_test.csv")
    names = [h[len("prob_"):] for h in header[2:]]
    C = len(names)
    y = np.array([names.index(v) for v in read_column(d / "cls_test.csv", "label")])
    pred = probs.argmax(axis=1)
    assert rep["task"] == "classification" and rep["rows"] == len(y)
    assert len(set(y)) == C, "the test data should hold every class"
    m = rep["metrics"]
    close(m["accuracy"], sk.accuracy_score(y, pred), "accuracy")
    for avg_name, fn in [("macro_precision", sk.precision_score), ("macro_recall", sk.recall_score),
                         ("macro_f1", sk.f1_score)]:
        close(m[avg_name], fn(y, pred, average="macro", zero_division=0), avg_name)
    close(m["roc_auc"], sk.roc_auc_score(y, probs, multi_class="ovr", average="macro"), "roc_auc")
    close(m["log_loss"], sk_log_loss(y, probs, C), "log_loss")
    close(m["ece"], ece_reference(probs, y), "ece")
    prec, rec, f1, support = sk.precision_recall_fscore_support(
        y, pred, labels=list(range(C)), zero_division=0
    )
    assert [c["name"] for c in rep["classes"]] == names
    for c, row in enumerate(rep["classes"]):
        close(row["precision"], prec[c], f"precision[{names[c]}]")
        close(row["recall"], rec[c], f"recall[{names[c]}]")
        close(row["f1"], f1[c], f"f1[{names[c]}]")
        close(row["roc_auc"], sk.roc_auc_score(y == c, probs[:, c]), f"roc_auc[{names[c]}]")
        assert row["support"] == support[c]
    cm = sk.confusion_matrix(y, pred, labels=list(range(C)))
    assert rep["confusion_matrix"]["matrix"] == cm.tolist()
    assert rep["confusion_matrix"]["labels"] == names
    # The baseline: the training labels' majority class, on the test rows.
    train_y = read_column(d / "cls_train.csv", "label")
    major = max(names, key=lambda n: (train_y.count(n), -names.index(n)))
    base = rep["baseline"]
    assert base["fitted_on"] == "train" and base["class"] == major
    close(base["metrics"]["accuracy"], float(np.mean(y == names.index(major))), "baseline accuracy")
    freq = f32([[train_y.count(n) / len(train_y) for n in names]] * len(y))
    close(base["metrics"]["log_loss"], sk_log_loss(y, freq, C), "baseline log_loss")
    assert m["accuracy"] > base["metrics"]["accuracy"]


def test_regression_matches_sklearn(models):
    d, _, model = models
    out = d / "reg_report"
    kiln_eval("--model", model, "--data", d / "reg_test.csv", "--train", d / "reg_train.csv",
              "--out", out)
    rep = json.loads((out / "report.json").read_text())
    _, pred = kiln_predict(d, model, d / "reg_test.csv")
    pred = pred[:, 0]
    t = f32([float(v) for v in read_column(d / "reg_test.csv", "y")])
    m = rep["metrics"]
    assert rep["task"] == "regression"
    close(m["mse"], sk.mean_squared_error(t, pred), "mse")
    close(m["rmse"], float(np.sqrt(sk.mean_squared_error(t, pred))), "rmse")
    close(m["mae"], sk.mean_absolute_error(t, pred), "mae")
    close(m["r2"], sk.r2_score(t, pred), "r2")
    train_t = f32([float(v) for v in read_column(d / "reg_train.csv", "y")])
    mean = float(np.mean(train_t))
    close(rep["baseline"]["prediction"], mean, "baseline mean")
    close(rep["baseline"]["metrics"]["mse"], sk.mean_squared_error(t, np.full_like(t, mean)),
          "baseline mse")
    assert m["mse"] < rep["baseline"]["metrics"]["mse"]
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "predicted_vs_true.svg"}
    ET.parse(out / "predicted_vs_true.svg")


def test_report_files_and_default_dir(models, tmp_path):
    d, model, _ = models
    # No --out: out/eval/<bundle folder name> under the working directory.
    p = subprocess.run([str(KILN), "eval", "--model", str(model), "--data",
                        str(d / "cls_test.csv")], cwd=tmp_path, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "out" / "eval" / model.name
    for name in ("report.json", "report.md", "confusion.svg", "roc.svg"):
        assert (out / name).stat().st_size > 0, name
    for name in ("confusion.svg", "roc.svg"):
        root = ET.parse(out / name).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg"
    roc = ET.parse(out / "roc.svg").getroot()
    assert len(roc.findall(".//{http://www.w3.org/2000/svg}polyline")) == len(LABELS)
    conf = ET.parse(out / "confusion.svg").getroot()
    assert len(conf.findall(".//{http://www.w3.org/2000/svg}rect")) >= len(LABELS) ** 2
    md = (out / "report.md").read_text()
    assert "| accuracy |" in md and "## Confusion matrix" in md and "## Per class" in md
    rep = json.loads((out / "report.json").read_text())
    assert rep["baseline"]["fitted_on"] == "test"  # no --train: the test labels' majority


def mlflow_run_id(stdout):
    m = re.search(r"^mlflow: run (\w+)$", stdout, re.M)
    assert m, stdout
    return m.group(1)


def test_logged_to_mlflow(models, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    d, model, _ = models
    env = mlflow_server.client_env()
    p = kiln_eval("--model", model, "--data", d / "cls_test.csv", "--out", tmp_path / "r1",
                  "--experiment", "kiln-eval-test", env=env)
    run_id = mlflow_run_id(p.stdout)
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(run_id)
    rep = json.loads((tmp_path / "r1" / "report.json").read_text())
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "kiln-eval-test"
    for k in ("accuracy", "macro_f1", "roc_auc", "log_loss", "ece"):
        assert run.data.metrics[f"eval/{k}"] == rep["metrics"][k], k
    assert run.data.metrics["eval/baseline_accuracy"] == rep["baseline"]["metrics"]["accuracy"]
    red = next(c for c in rep["classes"] if c["name"] == "red")
    assert run.data.metrics["eval/class/red/f1"] == red["f1"]
    assert run.data.tags["kiln.eval.data_digest"] == rep["data_digest"]
    arts = {a.path for a in client.list_artifacts(run_id, "eval")}
    assert arts == {"eval/report.json", "eval/report.md", "eval/confusion.svg", "eval/roc.svg"}

    # Into an existing run: its status is left alone.
    exp = client.get_experiment_by_name("kiln-eval-test").experiment_id
    existing = client.create_run(exp).info.run_id
    p = kiln_eval("--model", model, "--data", d / "cls_test.csv", "--out", tmp_path / "r2",
                  "--run", existing, env=env)
    assert mlflow_run_id(p.stdout) == existing
    run = client.get_run(existing)
    assert run.info.status == "RUNNING"
    assert run.data.metrics["eval/accuracy"] == rep["metrics"]["accuracy"]
    assert len(client.list_artifacts(existing, "eval")) == 4


def test_default_experiment(models, mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    d, _, model = models
    p = kiln_eval("--model", model, "--data", d / "reg_test.csv", "--out", tmp_path / "r",
                  env=mlflow_server.client_env())
    run = MlflowClient(mlflow_server.uri).get_run(mlflow_run_id(p.stdout))
    assert {"eval/mse", "eval/mae", "eval/r2", "eval/rmse"} <= set(run.data.metrics)
    assert MlflowClient(mlflow_server.uri).get_experiment(run.info.experiment_id).name == \
        "kiln-eval"


def test_malformed_inputs(models, tmp_path):
    d, model, reg = models
    # A column missing: the encoder needs every feature the model was trained on.
    rows = list(csv.reader(open(d / "cls_test.csv", newline="")))
    with open(tmp_path / "narrow.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[1:] for r in rows])
    p = kiln_eval("--model", model, "--data", tmp_path / "narrow.csv", check=False)
    assert p.returncode == 1, p.stderr
    assert "f0" in p.stderr, p.stderr
    # No label column: metrics need labels.
    with open(tmp_path / "nolabels.csv", "w", newline="") as f:
        csv.writer(f).writerows([r[:-1] for r in rows])
    p = kiln_eval("--model", model, "--data", tmp_path / "nolabels.csv", check=False)
    assert p.returncode == 1, p.stderr
    assert "label" in p.stderr, p.stderr
    # A label the model does not know.
    with open(tmp_path / "unknown.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows[:1] + [r[:-1] + ["purple"] for r in rows[1:3]])
    p = kiln_eval("--model", model, "--data", tmp_path / "unknown.csv", check=False)
    assert p.returncode == 1 and "purple" in p.stderr, p.stderr
    # A file that does not exist, a bundle that does not exist.
    p = kiln_eval("--model", model, "--data", tmp_path / "missing.csv", check=False)
    assert p.returncode == 1 and "missing.csv" in p.stderr, p.stderr
    p = kiln_eval("--model", tmp_path / "nomodel", "--data", d / "cls_test.csv", check=False)
    assert p.returncode == 1 and "nomodel" in p.stderr, p.stderr
    # Usage errors.
    assert kiln_eval("--model", model, check=False).returncode == 2
    assert kiln_eval("--model", model, "--data", d / "cls_test.csv", "--bogus",
                     check=False).returncode == 2
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    p = kiln_eval("--model", model, "--data", d / "cls_test.csv", "--run", "abc", check=False,
                  env=env)
    assert p.returncode == 2 and "MLFLOW_TRACKING_URI" in p.stderr


def test_registry_model_uri(models, mlflow_server, tmp_path):
    """models:/NAME@ALIAS and models:/NAME/VERSION resolve through the registry, and the default
    report directory is out/eval/NAME."""
    from mlflow.tracking import MlflowClient

    d, model, _ = models
    c = MlflowClient(mlflow_server.uri)
    exp = c.get_experiment_by_name("kiln-eval-registry") or c.get_experiment(
        c.create_experiment("kiln-eval-registry"))
    run = c.create_run(exp.experiment_id)
    c.log_artifacts(run.info.run_id, str(model), "model")
    name = "eval-registry-model"
    c.create_registered_model(name)
    v = c.create_model_version(name, f"{run.info.artifact_uri}/model", run.info.run_id)
    c.set_registered_model_alias(name, "champion", v.version)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=tmp_path / "cache")
    local = run_kiln("eval", "--model", model, "--data", d / "cls_test.csv", "--out",
                     tmp_path / "local")
    for uri in (f"models:/{name}@champion", f"models:/{name}/{v.version}"):
        p = subprocess.run([str(KILN), "eval", "--model", uri, "--data", str(d / "cls_test.csv")],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        rep = json.loads((tmp_path / "out" / "eval" / name / "report.json").read_text())
        assert rep["model"] == uri
        assert rep["metrics"] == json.loads((tmp_path / "local" / "report.json").read_text())[
            "metrics"]
    assert local.returncode == 0


def test_fashion_mnist_idx(tmp_path):
    """IDX images with an IDX labels file: ten classes named in the config ("T-shirt/top"), the
    metrics against sklearn on the 10,000 test images; without --labels, a clear error."""
    d = fmnist_or_skip()
    out = tmp_path / "fmnist"
    run_kiln("train", "--config", REPO / "configs" / "fashion_mnist.yaml",
             "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
             "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
             "--set", "data.test=", "--set", "data.limit=3000", "--set", "train.epochs=1",
             "--set", "model.layers=784-32-10", "--set", "train.threads=2",
             "--set", f"output={out}")
    images, labels = d / "t10k-images-idx3-ubyte.gz", d / "t10k-labels-idx1-ubyte.gz"
    run_kiln("eval", "--model", out, "--data", images, "--labels", labels, "--out",
             tmp_path / "r")
    rep = json.loads((tmp_path / "r" / "report.json").read_text())
    preds = tmp_path / "preds.csv"
    run_kiln("predict", "--model", out, "--input", images, "--output", preds)
    with open(preds, newline="") as f:
        rows = list(csv.reader(f))
    probs = f32([[float(v) for v in r[2:]] for r in rows[1:]])
    with gzip.open(labels) as f:
        y = np.frombuffer(f.read()[8:], dtype=np.uint8).astype(int)
    pred = probs.argmax(axis=1)
    assert rep["rows"] == 10000 and rep["classes"][0]["name"] == "T-shirt/top"
    close(rep["metrics"]["accuracy"], sk.accuracy_score(y, pred), "accuracy")
    close(rep["metrics"]["macro_f1"], sk.f1_score(y, pred, average="macro", zero_division=0),
          "macro_f1")
    close(rep["metrics"]["roc_auc"], sk.roc_auc_score(y, probs, multi_class="ovr"), "roc_auc")
    close(rep["metrics"]["log_loss"], sk_log_loss(y, probs, 10), "log_loss")
    close(rep["metrics"]["ece"], ece_reference(probs, y), "ece")
    ET.parse(tmp_path / "r" / "confusion.svg")
    p = run_kiln("eval", "--model", out, "--data", images, "--out", tmp_path / "r2", check=False)
    assert p.returncode == 1 and "label" in p.stderr, p.stderr
