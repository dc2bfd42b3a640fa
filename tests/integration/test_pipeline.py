"""`kiln pipeline run` end to end against a real MLflow server: train → evaluate → gates →
register → promote, a parent run with nested step runs (the training run among them), a rerun
that skips every unchanged step, a retrain that must beat the champion, a failing gate that
registers nothing and leaves the champion alone, manual approval, and no-tracking mode; the
data steps before training: checks that fail (nothing trained), a snapshot whose digest tags the
parent run, and training data ingested from SQLite and from a real PostgreSQL server."""

import csv
import json
import os
import sqlite3
import time

import pytest

from conftest import mlflow_or_skip, run_kiln, write_dataset
from test_predict_sql import pg  # noqa: F401  (the PostgreSQL server fixture, module scope)


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


def pipeline_yaml(d, name, work, epochs=20, min_acc=0.6, approval="auto", data_block=""):
    p = d / f"{name}-{epochs}-{min_acc}-{approval}.yaml"
    p.write_text(data_block +
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
    tags = c.get_model_version(name, "1").tags
    assert tags["kiln.gates"] == "passed"
    assert tags["kiln.gate.min:accuracy"].startswith("pass: accuracy")
    assert tags["kiln.gate.champion:accuracy"].startswith("pass: no champion yet")
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


# --- the data steps before training: ingest → checks → snapshot ------------------------------

GOOD_CHECKS = ("  checks:\n"
               "    min_rows: 100\n"
               "    columns: {f0: numeric, f1: numeric, label: categorical}\n"
               "    max_missing: 0.0\n"
               "    label: {column: label, min_share: 0.05}\n")


def parent_run(c, name):
    exp = c.get_experiment_by_name(name)
    runs = c.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])
    parents = [r for r in runs if r.data.tags.get("kiln.pipeline") == name]
    children = [r for r in runs
                if parents and r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    return parents[0], {r.data.tags.get("kiln.pipeline.step", "train") for r in children}


def test_failing_data_checks_train_nothing(data, mlflow_server, tmp_path):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    name = f"pipe-checks-{time.time_ns()}"
    work = tmp_path / "work"
    block = ("data:\n  checks:\n    min_rows: 10\n    ranges:\n      f0: [0, 1]\n"
             f"  store: {tmp_path / 'store'}\n")
    p = run_kiln("pipeline", "run", pipeline_yaml(data, name, work, data_block=block), env=env,
                 check=False)
    assert p.returncode == 3, p.stderr
    assert "data checks failed" in p.stderr
    assert "range:f0" in p.stderr and "FAIL" in p.stderr
    report = json.loads((work / "data-checks.json").read_text())
    assert report["passed"] is False
    assert [x["name"] for x in report["checks"] if not x["passed"]] == ["range:f0"]
    assert not (work / "model").exists()  # nothing trained
    assert not (tmp_path / "store").exists()  # nor snapshotted
    assert c.search_model_versions(f"name='{name}'") == []
    parent, steps = parent_run(c, name)
    assert parent.info.status == "FAILED" and steps == {"checks"}


def test_checks_and_snapshot_tag_the_parent_run(data, mlflow_server, tmp_path):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    name = f"pipe-snap-{time.time_ns()}"
    work, store = tmp_path / "work", tmp_path / "store"
    yaml = pipeline_yaml(data, name, work, data_block=f"data:\n{GOOD_CHECKS}  store: {store}\n")
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "version 1 is champion" in p.stdout, p.stderr
    assert "checks    passed" in p.stderr
    parent, steps = parent_run(c, name)
    digest = parent.data.tags["kiln.data_snapshot"]
    assert digest.startswith("sha256:") and len(digest) == 71
    assert {"checks", "snapshot", "train", "evaluate", "gates", "register"} <= steps
    # The snapshot is the data the model learned from: the version's data digest, the bytes.
    assert c.get_model_version(name, "1").tags["kiln.data_digest"] == digest
    snap = store / "sha256" / digest[7:]
    assert (snap / "train.csv").read_bytes() == (data / "train.csv").read_bytes()
    state = json.loads((work / "state.json").read_text())
    assert state["snapshot"]["digest"] == digest
    assert json.loads((work / "data-checks.json").read_text())["passed"] is True

    # A rerun skips the data steps too, and the new parent run still carries the digest.
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "0 step(s) run" in p.stdout, p.stderr
    assert "checks    skipped" in p.stderr and "snapshot  skipped" in p.stderr
    parent2, _ = parent_run(c, name)
    assert parent2.info.run_id != parent.info.run_id
    assert parent2.data.tags["kiln.data_snapshot"] == digest


def rows_of(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def test_ingest_from_sqlite_trains_on_the_ingested_csv(data, mlflow_server, tmp_path):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    header, rows = rows_of(data / "train.csv")
    db = tmp_path / "train.db"
    con = sqlite3.connect(db)
    cols = ", ".join(f"{h} REAL" if h != "label" else "label TEXT" for h in header)
    con.execute(f"CREATE TABLE train ({cols})")
    con.executemany(f"INSERT INTO train VALUES ({', '.join('?' * len(header))})",
                    [[float(v) for v in r[:-1]] + [r[-1]] for r in rows])
    con.commit()
    con.close()
    name = f"pipe-sqlite-{time.time_ns()}"
    work, store, out = tmp_path / "work", tmp_path / "store", tmp_path / "ingested.csv"
    block = (f"data:\n  ingest: {{from: 'sqlite:{db}', table: train, out: {out}}}\n"
             f"{GOOD_CHECKS}  store: {store}\n")
    yaml = pipeline_yaml(data, name, work, data_block=block)
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "version 1 is champion" in p.stdout, p.stderr
    assert "ingest    ok (400 rows, 7 columns" in p.stderr
    got_header, got = rows_of(out)
    assert got_header == header and len(got) == 400
    assert [[float(v) for v in r[:-1]] + [r[-1]] for r in got] == \
        [[float(v) for v in r[:-1]] + [r[-1]] for r in rows]
    parent, steps = parent_run(c, name)
    assert {"ingest", "checks", "snapshot", "train", "register"} <= steps
    digest = parent.data.tags["kiln.data_snapshot"]
    # Trained on the ingested file: the version's data digest is the snapshot of ingested.csv.
    assert c.get_model_version(name, "1").tags["kiln.data_digest"] == digest
    manifest = json.loads((store / "sha256" / digest[7:] / "manifest.json").read_text())
    assert [f["path"] for f in manifest["files"]] == ["ingested.csv"]

    # The database file unchanged: every step skipped. One row changed: ingested and retrained.
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "0 step(s) run" in p.stdout and "ingest    skipped" in p.stderr
    con = sqlite3.connect(db)
    con.execute("UPDATE train SET f0 = f0 + 1 WHERE rowid = 1")
    con.commit()
    con.close()
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "ingest    ok" in p.stderr and "train     ok" in p.stderr, p.stderr
    parent2, _ = parent_run(c, name)
    assert parent2.data.tags["kiln.data_snapshot"] != digest


def test_ingest_from_postgres(data, mlflow_server, pg, tmp_path):  # noqa: F811
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    header, rows = rows_of(data / "train.csv")
    pg.sql("DROP TABLE IF EXISTS pipe_train")
    pg.sql("CREATE TABLE pipe_train (id integer, "
           + ", ".join(f"{h} double precision" for h in header[:-1]) + ", label text)")
    values = ", ".join(f"({i}, {', '.join(r[:-1])}, '{r[-1]}')" for i, r in enumerate(rows))
    pg.sql(f"INSERT INTO pipe_train VALUES {values}")
    name = f"pipe-pg-{time.time_ns()}"
    work, out = tmp_path / "work", tmp_path / "pg.csv"
    query = f"SELECT {', '.join(header)} FROM pipe_train ORDER BY id"
    block = (f"data:\n  ingest: {{from: '{pg.uri}', query: '{query}', out: {out}}}\n"
             f"{GOOD_CHECKS}  store: {tmp_path / 'store'}\n")
    yaml = pipeline_yaml(data, name, work, data_block=block)
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "version 1 is champion" in p.stdout, p.stderr
    assert "ingest    ok (400 rows, 7 columns" in p.stderr
    got_header, got = rows_of(out)
    assert got_header == header and len(got) == 400
    parent, steps = parent_run(c, name)
    assert "ingest" in steps
    assert c.get_model_version(name, "1").tags["kiln.data_digest"] == \
        parent.data.tags["kiln.data_snapshot"]
    # A server is always asked again; the same rows leave everything after ingest skipped.
    p = run_kiln("pipeline", "run", yaml, env=env)
    assert "1 step(s) run" in p.stdout and "train     skipped" in p.stderr, p.stderr


@pytest.mark.parametrize("block, message", [
    ("data: {speed: 3}\n", 'data: unknown key "speed"'),
    ("data: {ingest: {from: 'sqlite:x.db', table: t, query: 'SELECT 1', out: x.csv}}\n",
     "exactly one of query and table"),
    ("data: {ingest: {from: 'sqlite:x.db', table: t}}\n", "from and out are required"),
    ("data: {checks: {min_rows: 1, colour: red}}\n", "data.checks"),
    ("data: {snapshot: maybe}\n", "data.snapshot: expected true or false"),
])
def test_bad_data_block(data, tmp_path, block, message):
    p = run_kiln("pipeline", "run", pipeline_yaml(data, "bad", tmp_path / "w", data_block=block),
                 check=False)
    assert p.returncode == 1 and message in p.stderr, p.stderr


def test_snapshot_off_without_tracking(data, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["KILN_DATA_STORE"] = str(tmp_path / "store")
    block = f"data:\n{GOOD_CHECKS}  snapshot: false\n"
    p = run_kiln("pipeline", "run", pipeline_yaml(data, "nosnap", tmp_path / "w", data_block=block),
                 env=env)
    assert "snapshot  off" in p.stderr and "checks    passed" in p.stderr
    assert not (tmp_path / "store").exists()
    assert "snapshot" not in json.loads((tmp_path / "w" / "state.json").read_text())
