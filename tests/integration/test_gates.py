"""`kiln gates` on real models: each gate passing and failing with its measured value (minimum
metric, baseline margin, champion comparison with a worse and a better model, latency, size), the
JSON report, exit codes (0 pass, 3 a gate failed), and the results written to a registered
version's tags in a real MLflow server."""

import json
import time

import pytest

from conftest import mlflow_or_skip, run_kiln, write_dataset


def train(d, data, name, epochs, lr):
    cfg = d / f"{name}.yaml"
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: label, val_fraction: 0.2, "
        "transform: standard}\n"
        "model: {layers: 6-16-3, activation: tanh, dropout: 0.0, task: classification}\n"
        f"optim: {{name: adamw, lr: {lr}}}\n"
        f"train: {{batch_size: 32, epochs: {epochs}, seed: 1, threads: 1, progress: none}}\n"
        f"output: {d / name}\n")
    run_kiln("train", "--config", cfg)
    return d / name


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("gates")
    data = d / "data.csv"
    write_dataset(data, rows=400)
    good = train(d, data, "good", 30, 0.01)
    weak = train(d, data, "weak", 1, 0.0001)
    return d, data, good, weak


def gates(d, data, model, yaml_text, *extra, check=False):
    cfg = d / "gates.yaml"
    cfg.write_text(yaml_text)
    report = d / "report.json"
    p = run_kiln("gates", "--model", model, "--data", data, "--config", cfg, "--report", report,
                 *extra, check=check)
    print(p.stdout, p.stderr)
    return p, json.loads(report.read_text()) if report.exists() and p.returncode in (0, 3) else None


def by_name(rep):
    return {g["name"]: g for g in rep["gates"]}


def test_min_baseline_size_latency(models):
    d, data, good, weak = models
    spec = ("min: {accuracy: 0.8}\nbaseline: {metric: accuracy, margin: 0.2}\n"
            "size: {max_mb: 1}\nlatency: {batch: 1, p99_ms: 50}\n")
    p, rep = gates(d, data, good, spec)
    assert p.returncode == 0 and rep["passed"] is True
    g = by_name(rep)
    assert g["min:accuracy"]["value"] >= 0.8
    assert 0 < g["size:mb"]["value"] < 1
    assert 0 < g["latency:p99_ms@1"]["value"] < 50
    p, rep = gates(d, data, weak, spec)
    assert p.returncode == 3 and rep["passed"] is False
    assert not by_name(rep)["min:accuracy"]["passed"]
    assert "FAIL" in p.stdout and "gates: FAILED" in p.stdout
    p, rep = gates(d, data, good, "size: {max_mb: 0.0001}\n")
    assert p.returncode == 3 and "bundle" in by_name(rep)["size:mb"]["detail"]
    p, rep = gates(d, data, good, "latency: {batch: 64, p99_ms: 0.000001}\n")
    assert p.returncode == 3 and not by_name(rep)["latency:p99_ms@64"]["passed"]


def test_champion_worse_and_better(models):
    d, data, good, weak = models
    spec = "champion: {metric: accuracy, tolerance: 0.01}\n"
    p, rep = gates(d, data, weak, spec, "--champion", good)
    assert p.returncode == 3  # the candidate is worse than the champion
    p, rep = gates(d, data, good, spec, "--champion", weak)
    assert p.returncode == 0  # better than the champion
    g = by_name(rep)["champion:accuracy"]
    assert g["value"] > g["limit"]


def test_bad_config_is_an_error(models):
    d, data, good, _ = models
    p, _ = gates(d, data, good, "speed: {max: 3}\n")
    assert p.returncode == 1 and 'unknown gate "speed"' in p.stderr


def test_results_in_version_tags(models, mlflow_server):
    mlflow_or_skip()
    from mlflow import MlflowClient

    d, data, good, _ = models
    c = MlflowClient(mlflow_server.uri)
    name = f"gated-{time.time_ns()}"
    c.create_registered_model(name)
    run = c.create_run(c.create_experiment(name))
    c.create_model_version(name, source=f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    env = mlflow_server.client_env()
    cfg = d / "tags.yaml"
    cfg.write_text("min: {accuracy: 0.8}\nsize: {max_mb: 1}\n")
    run_kiln("gates", "--model", good, "--data", data, "--config", cfg, "--tag", f"{name}/1",
             env=env)
    tags = c.get_model_version(name, "1").tags
    assert tags["kiln.gates"] == "passed"
    assert tags["kiln.gate.min:accuracy"].startswith("pass: accuracy")
    assert tags["kiln.gate.size:mb"].startswith("pass: bundle")
