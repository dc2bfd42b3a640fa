"""Fairness and messy data: a CSV with a categorical column and missing values goes through
`kiln gates` (the fairness gate's gap between the groups of a column equals the one computed in
Python from `kiln predict`'s output) and through `kiln pipeline run` (train, evaluate, gates
including fairness), without tracking."""

import csv
import json
import os

import numpy as np
import pytest

from conftest import run_kiln

REGIONS = ["north", "south", "east"]


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    d = tmp_path_factory.mktemp("fairness")
    rng = np.random.default_rng(11)
    rows = []
    for i in range(600):
        x = rng.normal(size=4)
        region = REGIONS[i % 3]
        label = "yes" if x[0] + 0.5 * x[1] + (0.8 if region == "east" else 0) > 0.2 else "no"
        cells = [f"{v:.3f}" for v in x]
        if i % 17 == 0:
            cells[2] = ""  # a missing number
        rows.append(cells + [region if i % 23 else "", label])  # and a missing category
    header = ["f0", "f1", "f2", "f3", "region", "label"]
    for name, part in (("train.csv", rows[:450]), ("test.csv", rows[450:])):
        with open(d / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(part)
    (d / "train.yaml").write_text(
        f"data: {{format: csv, train: {d / 'train.csv'}, test: {d / 'test.csv'}, "
        "label_column: label, categorical: [region], val_fraction: 0.2, transform: standard}\n"
        "model: {layers: 4-16-2, activation: relu, dropout: 0.0, task: classification}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 15, seed: 3, threads: 1, progress: none}\n"
        f"output: {d / 'model'}\n")
    # The encoded width (numbers, one-hot categories, missing-value indicators) is the data's
    # business: kiln names it when the layer spec is wrong.
    p = run_kiln("train", "--config", d / "train.yaml", check=False)
    if p.returncode != 0:
        import re
        m = re.search(r"the data has (\d+) features", p.stderr)
        assert m, p.stderr
        text = (d / "train.yaml").read_text().replace("4-16-2", f"{m.group(1)}-16-2")
        (d / "train.yaml").write_text(text)
    return d


def test_fairness_gap_matches_python(messy):
    d = messy
    run_kiln("train", "--config", d / "train.yaml")
    preds = d / "preds.csv"
    run_kiln("predict", "--model", d / "model", "--input", d / "test.csv", "--output", preds)
    with open(preds) as f:
        pred = [r["prediction"] for r in csv.DictReader(f)]
    with open(d / "test.csv") as f:
        test = list(csv.DictReader(f))
    acc = {}
    for g in set(r["region"] or "?" for r in test):
        idx = [i for i, r in enumerate(test) if (r["region"] or "?") == g]
        acc[g] = np.mean([pred[i] == test[i]["label"] for i in idx])
    gap = max(acc.values()) - min(acc.values())
    gates = d / "gates.yaml"
    gates.write_text("fairness: {column: region, metric: accuracy, max_gap: 1.0}\n")
    report = d / "report.json"
    run_kiln("gates", "--model", d / "model", "--data", d / "test.csv", "--config", gates,
             "--report", report)
    [g] = json.loads(report.read_text())["gates"]
    print(acc, gap, g)
    assert g["name"] == "fairness:region:accuracy" and g["passed"]
    assert abs(g["value"] - gap) < 1e-9
    if gap > 0:
        gates.write_text(f"fairness: {{column: region, metric: accuracy, max_gap: {gap / 2}}}\n")
        p = run_kiln("gates", "--model", d / "model", "--data", d / "test.csv", "--config", gates,
                     check=False)
        assert p.returncode == 3 and "FAIL" in p.stdout
    gates.write_text("fairness: {column: nowhere, metric: accuracy, max_gap: 1.0}\n")
    p = run_kiln("gates", "--model", d / "model", "--data", d / "test.csv", "--config", gates,
                 check=False)
    assert p.returncode == 3 and 'no column "nowhere"' in p.stdout


def test_pipeline_on_categorical_and_missing_values(messy, tmp_path):
    d = messy
    pipe = tmp_path / "pipeline.yaml"
    pipe.write_text(
        f"name: messy\ntrain_config: {d / 'train.yaml'}\nwork_dir: {tmp_path / 'w'}\n"
        "gates:\n  min: {accuracy: 0.7}\n"
        "  fairness: {column: region, metric: accuracy, max_gap: 0.5}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    p = run_kiln("pipeline", "run", pipe, env=env)
    print(p.stderr)
    assert "fairness:region:accuracy" in p.stderr and "gates     passed" in p.stderr
