"""`kiln train` recorded in a real MLflow server: everything a run should hold, checked through
MLflow's own client; an outage in the middle of training; wrong credentials (training completes
into the spool, `kiln tracking sync` delivers later); Ctrl-C ending the run as KILLED."""

import filecmp
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import KILN, REPO, fmnist_or_skip, mlflow_or_skip, run_kiln


def train_args(d, out, *extra):
    return ["train", "--config", REPO / "configs" / "fashion_mnist.yaml",
            "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
            "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
            "--set", f"data.test={d}/t10k-images-idx3-ubyte.gz",
            "--set", f"data.test_labels={d}/t10k-labels-idx1-ubyte.gz",
            "--set", "data.limit=3000", "--set", "train.batch_size=64",
            "--set", "model.layers=784-64-10", "--set", "train.patience=0",
            "--set", "train.threads=2", "--set", "train.progress=plain",
            "--set", "train.log_every=10", "--set", "tracking.system_interval=0.5",
            "--set", f"output={out}", *extra]


def client_for(server):
    mlflow = mlflow_or_skip()
    return mlflow.MlflowClient(server.uri)


def only_run(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    assert exp is not None, f"experiment {experiment} missing"
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, runs
    return runs[0]


def test_training_run_is_recorded(mlflow_server, tmp_path):
    d = fmnist_or_skip()
    out = tmp_path / "model"
    env = mlflow_server.client_env(KILN_SPOOL_DIR=tmp_path / "spool")
    p = run_kiln(*train_args(d, out, "--set", "train.epochs=2",
                             "--set", "tracking.experiment=recorded"),
                 "--register", "kiln-recorded", env=env)
    c = client_for(mlflow_server)
    run = only_run(c, "recorded")
    rid = run.info.run_id
    assert run.info.status == "FINISHED"
    assert f"mlflow: run {rid}" in p.stderr
    kj = json.loads((out / "kiln.json").read_text())
    metrics = kj["training"]["metrics"]

    # params: the resolved config, every key
    assert run.data.params["model.layers"] == "784-64-10"
    assert run.data.params["train.epochs"] == "2"
    assert run.data.params["optim.name"] == "adamw"
    assert len(run.data.params) == len(kj["training"]["config"])
    # tags
    tags = run.data.tags
    assert tags["kiln.version"] and tags["kiln.device"] in ("cpu", "cuda:0")
    assert tags["mlflow.source.name"] == "kiln train" and tags["mlflow.source.type"] == "JOB"
    assert tags["kiln.data_digest"] == kj["training_data_digest"]
    assert "784-64-10" in tags["mlflow.note.content"]
    # metrics: one value per step, steps 0..N-1, exactly once
    steps = metrics["steps"]
    hist = c.get_metric_history(rid, "train/loss")
    assert sorted(m.step for m in hist) == list(range(steps))
    assert len(c.get_metric_history(rid, "train/lr")) == steps
    assert len(c.get_metric_history(rid, "val/loss")) == 2
    acc = c.get_metric_history(rid, "val/accuracy")
    assert abs(acc[-1].value - metrics["val_accuracy"]) < 1e-3
    assert abs(run.data.metrics["test/accuracy"] - metrics["test_accuracy"]) < 1e-6
    assert c.get_metric_history(rid, "system/cpu_utilization_percentage")
    assert c.get_metric_history(rid, "system/system_memory_usage_megabytes")
    # datasets
    inputs = {[t.value for t in i.tags if t.key == "mlflow.data.context"][0]: i.dataset
              for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"train", "validation", "test"}
    assert kj["training_data_digest"].removeprefix("sha256:").startswith(inputs["train"].digest)
    assert json.loads(inputs["train"].profile)["features_shape"][1] == 784
    # artifacts: the bundle byte for byte, the config, the log and the curves
    local = Path(c.download_artifacts(rid, "", str(tmp_path / "dl")))
    for f in ("MLmodel", "model.safetensors", "kiln.json"):
        assert filecmp.cmp(local / "model" / f, out / f, shallow=False), f
    assert "model:\n  layers:" in (local / "config.yaml").read_text()
    assert "epoch 2/2 done" in (local / "train.log").read_text()
    assert (local / "curves.svg").read_text().startswith("<svg")
    # the MLflow 3 logged model, the run's output, and the registered version
    models = c.search_logged_models(experiment_ids=[run.info.experiment_id])
    assert len(models) == 1 and models[0].source_run_id == rid
    assert str(models[0].status).endswith("READY")
    assert [o.model_id for o in run.outputs.model_outputs] == [models[0].model_id]
    versions = c.search_model_versions("name='kiln-recorded'")
    assert len(versions) == 1 and versions[0].run_id == rid
    assert versions[0].tags["kiln.data_digest"] == kj["training_data_digest"]
    assert abs(float(versions[0].tags["test_accuracy"]) - metrics["test_accuracy"]) < 1e-5


def test_outage_mid_training_loses_nothing(mlflow_server_factory, tmp_path):
    d = fmnist_or_skip()
    server = mlflow_server_factory()
    out = tmp_path / "model"
    env = server.client_env(KILN_SPOOL_DIR=tmp_path / "spool")
    cmd = [str(KILN), *map(str, train_args(d, out, "--set", "train.epochs=6",
                                           "--set", "tracking.experiment=outage"))]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    time.sleep(1.5)
    server.stop()  # MLflow goes away in the middle of the run ...
    time.sleep(4)
    server.start()  # ... and comes back
    stdout, stderr = proc.communicate(timeout=300)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, stderr
    kj = json.loads((out / "kiln.json").read_text())
    steps = kj["training"]["metrics"]["steps"]
    c = client_for(server)
    run = only_run(c, "outage")
    assert run.info.status == "FINISHED"
    hist = c.get_metric_history(run.info.run_id, "train/loss")
    got = sorted(m.step for m in hist)
    assert got == list(range(steps)), f"{len(got)} values for {steps} steps"
    assert len(c.get_metric_history(run.info.run_id, "val/loss")) == 6
    assert not list((tmp_path / "spool").glob("*/ops.jsonl")), "spool left behind"
    assert elapsed < 120, f"training with an outage took {elapsed:.0f}s"


def test_wrong_credentials_spool_then_sync(mlflow_server_factory, tmp_path):
    d = fmnist_or_skip()
    server = mlflow_server_factory(auth=True)
    out = tmp_path / "model"
    spool = tmp_path / "spool"
    bad = server.client_env(KILN_SPOOL_DIR=spool, MLFLOW_TRACKING_PASSWORD="wrong")
    p = run_kiln(*train_args(d, out, "--set", "train.epochs=1",
                             "--set", "tracking.experiment=authy"), env=bad)
    assert (out / "model.safetensors").exists(), "training must complete without MLflow"
    assert "authentication failed" in p.stderr or "401" in p.stderr, p.stderr
    assert "kiln tracking sync" in p.stderr
    assert list(spool.glob("*/ops.jsonl")), "nothing was spooled"

    p = run_kiln("tracking", "sync", check=False, env=bad)
    assert p.returncode == 1 and list(spool.glob("*/ops.jsonl"))

    good = server.client_env(KILN_SPOOL_DIR=spool)
    p = run_kiln("tracking", "sync", env=good)
    assert "spool removed" in p.stderr, p.stderr
    assert not list(spool.glob("*/ops.jsonl"))
    mlflow = mlflow_or_skip()
    import os
    os.environ.update({"MLFLOW_TRACKING_USERNAME": server.admin_user,
                       "MLFLOW_TRACKING_PASSWORD": server.admin_password})
    try:
        c = mlflow.MlflowClient(server.uri)
        run = only_run(c, "authy")
        steps = json.loads((out / "kiln.json").read_text())["training"]["metrics"]["steps"]
        assert run.info.status == "FINISHED"
        assert len(c.get_metric_history(run.info.run_id, "train/loss")) == steps
    finally:
        os.environ.pop("MLFLOW_TRACKING_USERNAME")
        os.environ.pop("MLFLOW_TRACKING_PASSWORD")


def test_ctrl_c_ends_the_run_as_killed(mlflow_server, tmp_path):
    d = fmnist_or_skip()
    out = tmp_path / "model"
    env = mlflow_server.client_env(KILN_SPOOL_DIR=tmp_path / "spool")
    cmd = [str(KILN), *map(str, train_args(d, out, "--set", "train.epochs=100000",
                                           "--set", "tracking.experiment=interrupted"))]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    seen = []
    for line in proc.stderr:  # interrupt once training is under way
        seen.append(line)
        if line.startswith("epoch 3/"):
            proc.send_signal(signal.SIGINT)
            break
    stdout, rest = proc.communicate(timeout=120)
    stderr = "".join(seen) + rest
    assert proc.returncode == 1, stderr
    assert re.search(r"stopped at step \d+ \(interrupted\)", stderr), stderr
    run = only_run(client_for(mlflow_server), "interrupted")
    assert run.info.status == "KILLED"
