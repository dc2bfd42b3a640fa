"""`kiln pipeline run` end to end against a real MLflow server: train → evaluate → gates →
register → promote, a parent run with nested step runs (the training run among them), a rerun
that skips every unchanged step, a retrain that must beat the champion, a failing gate that
registers nothing and leaves the champion alone, manual approval, and no-tracking mode."""

import os
import time

import pytest

from conftest import mlflow_or_skip, run_kiln
from test_serving import write_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("pipeline")
    write_dataset(d / "all.csv", rows=550, seed=5)
    lines = (d / "all.csv").read_text().splitlines(keepends=True)
    (d / "train.csv").write_text("".join(lines[:401]))  # header + 400 rows
    (d / "test.csv").write_text(lines[0] + "".join(lines[401:]))  # header + 150 held out
    (d / "train.yaml").write_text(
        f"data: {{format: csv, train: {d / 'train.csv'}, test: {d / 'test.csv'}, "
        "label_column: label, val_fraction: 0.2, transform: standard}\n"
        "model: {layers: 6-16-3, activation: tanh, dropout: 0.0, task: classification}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 20, seed: 1, threads: 1, progress: none}\n"
        f"output: {d / 'unused'}\n")
    return d


def pipeline_yaml(d, name, work, epochs=20, min_acc=0.6, approval="auto"):
    p = d / f"{name}-{epochs}-{min_acc}-{approval}.yaml"
    p.write_text(
        f"name: {name}\ntrain_config: {d / 'train.yaml'}\nset: [train.epochs={epochs}]\n"
        f"experiment: {name}\nwork_dir: {work}\napproval: {approval}\n"
        f"gates:\n  min: {{accuracy: {min_acc}}}\n"
        "  baseline: {metric: accuracy, margin: 0.1}\n"
        "  champion: {metric: accuracy, tolerance: 0.05}\n"
        "  size: {max_mb: 5}\n")
    return p


def test_pipeline_registers_promotes_and_skips(data, mlflow_server, tmp_path):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    name = f"pipe-{time.time_ns()}"
    work = tmp_path / "work"

    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, work), "--trigger", "test", env=env)
    print(p.stderr)
    assert "version 1 is champion" in p.stdout
    assert dict(c.get_registered_model(name).aliases) == {"champion": "1"}
    assert c.get_model_version(name, "1").tags["kiln.gates"] == "passed"
    assert (work / "gate-report.json").exists() and (work / "eval" / "report.json").exists()
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kiln.pipeline") == name]
    assert len(parents) == 1 and parents[0].data.tags["kiln.trigger"] == "test"
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    steps = {r.data.tags.get("kiln.pipeline.step", "train") for r in children}
    assert {"train", "evaluate", "gates", "register"} <= steps
    assert "gate-report.json" in [a.path for a in c.list_artifacts(parents[0].info.run_id)]

    # Nothing changed: every step is skipped, no new version.
    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, work), env=env)
    assert "0 step(s) run" in p.stdout
    assert "skipped" in p.stderr
    assert len(c.search_model_versions(f"name='{name}'")) == 1

    # A failing gate: exit 3, nothing registered, the champion untouched.
    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, work, epochs=21, min_acc=0.9999),
                 env=env, check=False)
    assert p.returncode == 3, p.stderr
    assert "gates failed" in p.stderr and "FAIL" in p.stderr
    assert len(c.search_model_versions(f"name='{name}'")) == 1
    assert dict(c.get_registered_model(name).aliases) == {"champion": "1"}

    # A retrain (changed config) that holds up against the champion: version 2 takes over.
    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, work, epochs=22), env=env)
    print(p.stderr)
    assert "champion:accuracy" in p.stderr
    assert dict(c.get_registered_model(name).aliases) == {"champion": "2", "previous": "1"}


def test_manual_approval_makes_a_challenger(data, mlflow_server, tmp_path):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    name = f"pipe-manual-{time.time_ns()}"
    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, tmp_path / "w", approval="manual"),
                 env=env)
    assert "challenger" in p.stdout
    assert dict(c.get_registered_model(name).aliases) == {"challenger": "1"}
    assert c.get_model_version(name, "1").tags["kiln.approval"] == "pending"
    run_kiln("approve", name, "1", "--by", "carol", env=env)
    assert dict(c.get_registered_model(name).aliases)["champion"] == "1"


def test_without_tracking_train_eval_gates_only(data, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    p = run_kiln("pipeline", "run", pipeline_yaml(data, "offline", tmp_path / "w"), env=env)
    assert "register  skipped (no MLFLOW_TRACKING_URI)" in p.stderr
    assert (tmp_path / "w" / "model" / "kiln.json").exists()


def test_bad_pipeline_file(data, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ntrain_config: /nonexistent.yaml\nspeed: 3\n")
    p = run_kiln("pipeline", "run", bad, check=False)
    assert p.returncode == 1 and 'unknown key "speed"' in p.stderr
