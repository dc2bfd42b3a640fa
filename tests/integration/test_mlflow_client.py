"""tracking/'s MLflow client, against a real `mlflow server` (SQLite backend, local artifacts,
loopback, a free port), checked through MLflow's own Python client (`mlflow.MlflowClient`).

- tests/tools/mlflow_probe drives the C client: a run with params, tags, metric histories,
  dataset inputs and artifacts; uploads, downloads, logged models.
- `kiln register`, `kiln alias set/get` and `kiln predict --model models:/...` with a bundle
  trained by `kiln train` on a small CSV.
- basic auth (`mlflow server --app-name basic-auth`): the right credentials work, wrong ones fail
  with a clear message.
- outage: the server stopped and restarted while the probe logs; every metric arrives once.
"""

import filecmp
import json
import math
import os
import subprocess
import time

import pytest

from conftest import PROBE, run_kiln, run_probe

SMOKE_STEPS = 1250
LOSS_KEY, ACC_KEY = "train/loss", "train/acc"
NOTE = 'probe run: "quoted", ünïcöde ✓\nsecond line'
MAX_FLOAT = 1.7976931348623157e308


def client(server):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=server.uri, registry_uri=server.uri)


def probe_json(*args, env):
    return json.loads(run_probe(*args, env=env).stdout)


def make_tree(root):
    """A directory with nested folders, an empty file, a space and non-ASCII in names."""
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors:\n  kiln: {}\n")
    (root / "sub" / "weights one.bin").write_bytes(os.urandom(200_000))
    (root / "sub" / "deeper" / "ünï.txt").write_text("nested ✓\n")
    (root / "empty.txt").write_bytes(b"")
    return root


def assert_same_tree(a, b):
    cmp = filecmp.dircmp(a, b)
    assert not cmp.left_only and not cmp.right_only, (cmp.left_only, cmp.right_only)
    for name in cmp.common_files:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in cmp.common_dirs:
        assert_same_tree(a / name, b / name)


# --- the run: params, tags, metrics, datasets, artifacts ----------------------------------------


@pytest.fixture(scope="module")
def smoke(mlflow_server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    big = tmp / "big.bin"
    big.write_bytes(os.urandom(3_000_000))
    tree = make_tree(tmp / "tree")
    out = probe_json("run-smoke", "probe-smoke", "--file", big, "--dir", tree,
                     env=mlflow_server.client_env())
    return out, big, tree, tmp


def test_run_params_and_tags(mlflow_server, smoke):
    out, *_ = smoke
    run = client(mlflow_server).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and run.info.end_time >= run.info.start_time
    assert run.info.run_name == "smoke"
    assert run.info.artifact_uri == out["artifact_uri"]
    params = run.data.params
    assert len(params) == 150
    for i in range(150):
        # MLflow keeps at most 6000 characters of a param; the client cuts longer values.
        assert params[f"p{i:03d}"] == ("P" * 6000 if i % 15 == 0 else f"value-{i}")
    tags = run.data.tags
    for i in range(102):
        assert tags[f"t{i:03d}"] == ("T" * 5000 if i % 25 == 0 else f"tag value {i}")
    assert tags["mlflow.note.content"] == NOTE
    assert tags["kiln.data_digest"] == "sha256:0123456789abcdef"
    assert tags["probe.empty"] == ""
    assert tags["mlflow.source.name"] == "mlflow_probe" and tags["mlflow.source.type"] == "JOB"


def test_run_metric_histories(mlflow_server, smoke):
    out, *_ = smoke
    c = client(mlflow_server)
    for key, value in ((LOSS_KEY, lambda s: 1.0 / (s + 1)), (ACC_KEY, lambda s: s / 1250.0)):
        hist = sorted(c.get_metric_history(out["run_id"], key), key=lambda m: m.step)
        assert [m.step for m in hist] == list(range(SMOKE_STEPS)), key
        assert [m.value for m in hist] == [value(s) for s in range(SMOKE_STEPS)], key
        t0 = hist[0].timestamp
        assert [m.timestamp - t0 for m in hist] == list(range(SMOKE_STEPS)), key
    special = sorted(c.get_metric_history(out["run_id"], "special"), key=lambda m: m.step)
    assert [m.step for m in special] == [1, 2, 3]
    assert math.isnan(special[0].value)
    assert special[1].value == MAX_FLOAT and special[2].value == -MAX_FLOAT  # MLflow clips inf
    run = c.get_run(out["run_id"])
    assert run.data.metrics[LOSS_KEY] == 1.0 / SMOKE_STEPS


def test_run_dataset_inputs(mlflow_server, smoke):
    out, *_ = smoke
    inputs = client(mlflow_server).get_run(out["run_id"]).inputs.dataset_inputs
    by_ctx = {[t.value for t in d.tags if t.key == "mlflow.data.context"][0]: d.dataset
              for d in inputs}
    assert set(by_ctx) == {"train", "test"}
    train = by_ctx["train"]
    assert train.name == "probe-data"
    assert train.digest == "00112233445566778899aabbccddeeff0011"  # MLflow's 36-character cap
    assert train.source_type == "local"
    assert json.loads(train.source) == {"uri": "/data/probe.csv"}
    assert json.loads(train.schema) == {"mlflow_colspec": [{"type": "double", "name": "x"}]}
    assert json.loads(train.profile) == {"num_rows": 10}
    assert by_ctx["test"].digest == "feedbeef"


def test_run_artifacts_are_byte_identical(mlflow_server, smoke, tmp_path):
    out, big, tree, _ = smoke
    c = client(mlflow_server)
    got = c.download_artifacts(out["run_id"], "data/big.bin", str(tmp_path / "py"))
    assert open(got, "rb").read() == big.read_bytes()
    got_tree = c.download_artifacts(out["run_id"], "bundle", str(tmp_path / "py"))
    assert_same_tree(tree, type(tree)(got_tree))
    # ...and the C client's own download, through runs:/ and the artifact URI.
    env = mlflow_server.client_env()
    run_probe("download", f"runs:/{out['run_id']}", "bundle", tmp_path / "c1", env=env)
    assert_same_tree(tree, tmp_path / "c1")
    run_probe("download", out["artifact_uri"], "data/big.bin", tmp_path / "c2.bin", env=env)
    assert (tmp_path / "c2.bin").read_bytes() == big.read_bytes()


def test_large_file_streams(mlflow_server, tmp_path):
    env = mlflow_server.client_env()
    run = probe_json("create-run", "probe-large", env=env)
    big = tmp_path / "large.bin"
    with open(big, "wb") as f:
        for _ in range(64):
            f.write(os.urandom(1 << 20))
    run_probe("upload", run["run_id"], big, "blobs/large.bin", env=env)
    run_probe("download", run["artifact_uri"], "blobs/large.bin", tmp_path / "back.bin", env=env)
    assert filecmp.cmp(big, tmp_path / "back.bin", shallow=False)
    got = client(mlflow_server).download_artifacts(run["run_id"], "blobs/large.bin", str(tmp_path))
    assert filecmp.cmp(big, got, shallow=False)


def test_mlflow_errors_become_clear_messages(mlflow_server):
    env = mlflow_server.client_env()
    p = run_probe("call", "GET", "/api/2.0/mlflow/runs/get?run_id=0123456789abcdef", env=env,
                  check=False)
    assert p.returncode == 1
    assert "MLflow 404 RESOURCE_DOES_NOT_EXIST: Run with id=0123456789abcdef not found" in p.stderr
    assert "(GET /api/2.0/mlflow/runs/get)" in p.stderr
    p = run_probe("call", "POST", "/api/2.0/mlflow/runs/log-batch", '{"run_id": "x", "metrics": '
                  '[{"key": "a"}]}', env=env, check=False)
    assert p.returncode == 1
    assert "MLflow 400 INVALID_PARAMETER_VALUE:" in p.stderr
    assert "(POST /api/2.0/mlflow/runs/log-batch)" in p.stderr


def test_unreachable_server_gives_up_after_the_retry_budget():
    env = {**os.environ, "MLFLOW_TRACKING_URI": "http://127.0.0.1:9"}
    t = time.monotonic()
    p = run_probe("--retries", "2", "--backoff", "0.2", "create-run", "x", env=env, check=False)
    took = time.monotonic() - t
    assert p.returncode == 1
    assert "cannot reach MLflow at http://127.0.0.1:9" in p.stderr and "3 tries" in p.stderr
    assert 0.2 <= took < 10  # backoff 0.2 s then 0.4 s, each +-50%


# --- registry: register, alias, predict from models:/ -----------------------------------------


def train_bundle(tmp_path):
    import random

    rng = random.Random(3)
    data = tmp_path / "data.csv"
    with open(data, "w") as f:
        f.write("a,b,c,d,label\n")
        for _ in range(150):
            x = [rng.gauss(0, 1) for _ in range(4)]
            f.write(",".join(f"{v:.4f}" for v in x) + ("," + ("yes" if x[0] + x[1] > 0 else "no")))
            f.write("\n")
    out = tmp_path / "bundle"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: label, val_fraction: 0.2}}\n"
        "model: {layers: 4-8-2}\n"
        "train: {batch_size: 16, epochs: 2, seed: 1, threads: 1, progress: none}\n"
        f"output: {out}\n"
    )
    # Without a tracking URI: this bundle is made by hand, not by an MLflow-tracked run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    run_kiln("train", "--config", cfg, env=env)
    return data, out


def test_register_alias_and_predict_from_the_registry(mlflow_server, tmp_path, monkeypatch):
    import mlflow

    # Unset, MLflow's Python client would resolve models:/ in a local ./mlflow.db.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.uri)

    data, bundle = train_bundle(tmp_path)
    cache = tmp_path / "cache"
    env = mlflow_server.client_env(KILN_MODEL_CACHE=cache)
    c = client(mlflow_server)
    run = probe_json("create-run", "probe-registry", env=env)
    rid = run["run_id"]
    run_probe("call", "POST", "/api/2.0/mlflow/runs/log-batch", json.dumps({
        "run_id": rid, "tags": [{"key": "kiln.data_digest", "value": "sha256:abc123"}],
        "metrics": [{"key": "test/accuracy", "value": 0.875, "timestamp": 1, "step": 3},
                    {"key": "val/loss", "value": 0.25, "timestamp": 1, "step": 3}]}), env=env)

    p = run_kiln("register", "--run", rid, "--name", "probe-model", env=env, check=False)
    assert p.returncode == 1 and 'no artifact directory "model"' in p.stderr

    run_probe("upload", rid, bundle, "model", env=env)
    p = run_kiln("register", "--run", rid, "--name", "probe-model", env=env)
    assert p.stdout.strip() == "1"
    mv = c.get_model_version("probe-model", "1")
    assert mv.source == f"{run['artifact_uri']}/model" and mv.run_id == rid
    assert mv.tags == {"kiln.data_digest": "sha256:abc123", "test_accuracy": "0.875",
                       "val_loss": "0.25"}

    run_kiln("alias", "set", "probe-model", "champion", "1", env=env)
    assert run_kiln("alias", "get", "probe-model", "champion", env=env).stdout.strip() == "1"
    assert c.get_model_version_by_alias("probe-model", "champion").version == "1"
    p = run_kiln("alias", "get", "probe-model", "nope", env=env, check=False)
    assert p.returncode == 1 and "alias nope not found" in p.stderr

    local = tmp_path / "local.csv"
    run_kiln("predict", "--model", bundle, "--input", data, "--output", local, env=env)
    for uri in ("models:/probe-model@champion", "models:/probe-model/1"):
        out = tmp_path / "remote.csv"
        run_kiln("predict", "--model", uri, "--input", data, "--output", out, env=env)
        assert out.read_bytes() == local.read_bytes(), uri

    # The cache: one content-addressed copy, identical to the bundle, with its manifest.
    [entry] = [d for d in (cache / "sha256").iterdir() if d.is_dir()]
    assert len(entry.name) == 64
    assert_same_tree(bundle, entry)
    manifest = (cache / "sha256" / f"{entry.name}.manifest").read_text().splitlines()
    assert sorted(line.split(" ", 2)[2] for line in manifest) == sorted(
        f.name for f in bundle.iterdir())
    # A damaged copy is noticed (size or digest) and downloaded again.
    with open(entry / "kiln.json", "a") as f:
        f.write(" ")
    out = tmp_path / "again.csv"
    run_kiln("predict", "--model", "models:/probe-model@champion", "--input", data, "--output",
             out, env=env)
    assert out.read_bytes() == local.read_bytes()
    assert_same_tree(bundle, entry)

    # MLflow's own client reads the version kiln registered.
    got = mlflow.artifacts.download_artifacts(artifact_uri="models:/probe-model@champion",
                                              dst_path=str(tmp_path / "py"))
    (type(bundle)(got) / "registered_model_meta").unlink()  # the Python client's own note
    assert_same_tree(bundle, type(bundle)(got))


def test_register_prefers_the_runs_logged_model(mlflow_server, tmp_path):
    data, bundle = train_bundle(tmp_path)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=tmp_path / "cache")
    c = client(mlflow_server)
    run = probe_json("create-run", "probe-logged", env=env)
    rid = run["run_id"]
    lm = probe_json("logged-model", run["experiment_id"], rid, bundle, env=env)
    model = c.get_logged_model(lm["model_id"])
    assert model.source_run_id == rid and str(model.status) in ("READY", "LoggedModelStatus.READY")
    assert model.params == {"layers": "4-8-3", "task": "classification"}
    outputs = c.get_run(rid).outputs.model_outputs
    assert [(o.model_id, o.step) for o in outputs] == [(lm["model_id"], 7)]

    version = run_kiln("register", "--run", rid, "--name", "probe-logged", env=env).stdout.strip()
    mv = c.get_model_version("probe-logged", version)
    assert mv.source == f"models:/{lm['model_id']}" and mv.run_id == rid

    local, remote = tmp_path / "local.csv", tmp_path / "remote.csv"
    run_kiln("predict", "--model", bundle, "--input", data, "--output", local, env=env)
    for uri in (f"models:/probe-logged/{version}", f"models:/{lm['model_id']}"):
        run_kiln("predict", "--model", uri, "--input", data, "--output", remote, env=env)
        assert remote.read_bytes() == local.read_bytes(), uri


# --- authentication ----------------------------------------------------------------------------


def test_basic_auth(mlflow_server_factory, tmp_path, monkeypatch):
    server = mlflow_server_factory(auth=True)
    env = server.client_env()
    out = probe_json("run-smoke", "probe-auth", env=env)
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", server.admin_user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    run = client(server).get_run(out["run_id"])
    assert run.info.status == "FINISHED" and len(run.data.params) == 150

    clear = (f"authentication failed for {server.uri} (check MLFLOW_TRACKING_USERNAME/PASSWORD "
             "or MLFLOW_TRACKING_TOKEN)")
    for bad in (dict(MLFLOW_TRACKING_PASSWORD="wrong-password"),
                dict(MLFLOW_TRACKING_USERNAME="", MLFLOW_TRACKING_PASSWORD="",
                     MLFLOW_TRACKING_TOKEN="not-a-token")):
        bad_env = {**env, **bad}
        t = time.monotonic()
        p = run_probe("create-run", "probe-auth", env=bad_env, check=False)
        assert p.returncode == 1 and clear in p.stderr, p.stderr
        assert time.monotonic() - t < 5  # a 401 is not retried
        p = run_kiln("alias", "get", "m", "a", env=bad_env, check=False)
        assert p.returncode == 1 and clear in p.stderr, p.stderr

    # Credentials in the URI work too, and never show in messages.
    uri_env = {k: v for k, v in env.items() if not k.startswith("MLFLOW_TRACKING_")}
    uri_env["MLFLOW_TRACKING_URI"] = server.uri.replace(
        "http://", f"http://{server.admin_user}:{server.admin_password}@")
    run_probe("create-run", "probe-auth", env=uri_env)
    uri_env["MLFLOW_TRACKING_URI"] = server.uri.replace("http://", "http://admin:nope@")
    p = run_probe("create-run", "probe-auth", env=uri_env, check=False)
    assert p.returncode == 1 and clear in p.stderr and "nope" not in p.stderr


# --- outage: the server goes away mid-sequence and comes back ----------------------------------


def test_outage_recovers_within_the_retry_budget(mlflow_server_factory):
    server = mlflow_server_factory()
    env = server.client_env()
    run = probe_json("create-run", "probe-outage", env=env)
    n = 80
    probe = subprocess.Popen(
        [str(PROBE), "--retries", "30", "--backoff", "0.25",
         "--backoff-max", "2", "log-metrics", run["run_id"], "outage/value", str(n),
         "--sleep-ms", "50"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)
        assert probe.poll() is None, "the probe finished before the outage"
        server.stop()
        time.sleep(2)
        assert probe.poll() is None, "the probe did not wait for the server"
        server.start()
        stdout, stderr = probe.communicate(timeout=120)
    finally:
        if probe.poll() is None:
            probe.kill()
    assert probe.returncode == 0, stderr
    assert json.loads(stdout) == {"logged": n}
    hist = client(server).get_metric_history(run["run_id"], "outage/value")
    assert sorted((m.step, m.value) for m in hist) == [(i, i * 0.5) for i in range(n)]
