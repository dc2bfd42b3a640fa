"""Data versioning and checks through the real kiln binary: `kiln data snapshot` (a local store
and MLflow artifacts), `kiln data diff`, `kiln data ingest` from a real PostgreSQL server and from
SQLite, and `kiln data check`."""

import csv
import hashlib
import json
import os
import sqlite3
import subprocess

import pytest

from conftest import _free_port, run_kiln
from test_predict_sql import pg  # noqa: F401  (the PostgreSQL 15 server fixture, module scope)


def write_rows(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.reader(f))


def base_rows(n=200):
    cities = ["NY", "LA, CA", 'say "SF"', "Boston"]
    return [[i, 20.5 + (i * 7) % 50, cities[i % 4], "" if i % 10 == 0 else i % 3, i % 2]
            for i in range(n)]


HEADER = ["id", "age", "city", "score", "label"]


def snapshot(path, store, *extra):
    p = run_kiln("data", "snapshot", path, "--store", store, *extra)
    digest = p.stdout.strip()
    assert digest.startswith("sha256:") and len(digest) == 71, p.stdout
    return digest, p


# --- snapshots and diffs -------------------------------------------------------------------------


def test_snapshot_twice_same_digest_byte_change_differs(tmp_path):
    store = tmp_path / "store"
    data = write_rows(tmp_path / "train.csv", HEADER, base_rows())
    d1, p1 = snapshot(data, store, "--name", "v1")
    assert "stored in" in p1.stderr
    d2, p2 = snapshot(data, store)
    assert d1 == d2
    assert "already in the store" in p2.stderr
    # The version is the data digest `kiln data describe` (and training) reports.
    describe = run_kiln("data", "describe", data).stdout
    assert f"digest:    {d1}" in describe
    snap_dir = store / "sha256" / d1[7:]
    manifest = json.loads((snap_dir / "manifest.json").read_text())
    assert manifest["digest"] == d1 and manifest["name"] == "v1"
    assert manifest["datasets"][0]["rows"] == 200
    types = {c["name"]: c["type"] for c in manifest["datasets"][0]["schema"]["columns"]}
    assert types == {"id": "numeric", "age": "numeric", "city": "categorical",
                     "score": "numeric", "label": "numeric"}
    f = manifest["files"][0]
    assert f["path"] == "train.csv" and f["bytes"] == data.stat().st_size
    assert f["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert (snap_dir / "train.csv").read_bytes() == data.read_bytes()
    assert [p.name for p in (store / "sha256").iterdir()] == [d1[7:]]

    # One byte changed: 20.5 -> 21.5 in the first row's age.
    text = data.read_text()
    changed = tmp_path / "v2" / "train.csv"
    changed.parent.mkdir()
    first = text.splitlines()[1]
    assert first.startswith("0,20.5,")
    changed.write_text(text.replace("0,20.5,", "0,21.5,", 1))
    d3, _ = snapshot(changed, store, "--name", "v2")
    assert d3 != d1
    listing = run_kiln("data", "snapshot", "--list", "--store", store).stdout
    assert d1[:23] in listing and d3[:23] in listing and "v1" in listing and "v2" in listing

    # diff by digest prefix reports the change; exit 0 although they differ.
    p = run_kiln("data", "diff", d1[:15], d3[:15], "--store", store, "--json")
    rep = json.loads(p.stdout)
    assert rep["identical"] is False and rep["schema_changed"] is False
    assert rep["a"]["digest"] == d1 and rep["b"]["digest"] == d3
    age = next(c for c in rep["columns"] if c["name"] == "age")
    assert age["min"] == [20.5, 20.5] and age["mean"][1] > age["mean"][0]
    assert age["ks"] > 0
    others = [c for c in rep["columns"] if c["name"] != "age"]
    assert all(c["psi"] == 0 for c in others if c["psi"] is not None)
    same = run_kiln("data", "diff", data, d1, "--store", store, "--json")
    assert json.loads(same.stdout)["identical"] is True

    # Other commands take a digest prefix too: describe (through KILN_DATA_STORE) and check.
    env = dict(os.environ, KILN_DATA_STORE=str(store))
    described = run_kiln("data", "describe", d3[:12], env=env).stdout
    assert f"digest:    {d3}" in described and str(snap_dir.parent / d3[7:]) in described
    spec = tmp_path / "checks.yaml"
    spec.write_text("min_rows: 200\nranges: {age: [21, 70]}\n")
    p = run_kiln("data", "check", d3[:12], "--store", store, "--spec", spec, check=False)
    assert p.returncode == 1 and "age: min 20.5, max 69.5 outside [21, 70]" in p.stdout
    p = run_kiln("data", "check", "sha256:ffff0000", "--store", store, "--spec", spec,
                 check=False)
    assert p.returncode == 1 and "no snapshot sha256:ffff0000" in p.stderr


def test_diff_reports_distribution_and_schema_changes(tmp_path):
    rows = base_rows(400)
    a = write_rows(tmp_path / "a.csv", HEADER, rows)
    # B: age shifted by +30, city frequencies moved (NY takes over), score more missing, label
    # dropped, a new column added.
    cities = ["NY", "NY", "NY", "Boston"]
    b_rows = [[r[0], r[1] + 30, cities[i % 4], "" if i % 4 == 0 else r[3], "x"]
              for i, r in enumerate(rows)]
    b = write_rows(tmp_path / "b.csv", ["id", "age", "city", "score", "extra"], b_rows)
    p = run_kiln("data", "diff", a, b)
    out = p.stdout
    assert "schema:    changed" in out
    names = ("id", "age", "city", "score", "label", "extra")
    lines = {line[2:].split()[0]: line for line in out.splitlines()
             if line[:2] in ("! ", "  ") and line[2:3] != " " and line[2:].split()[0] in names}
    assert lines["age"].startswith("!") and "shifted" in lines["age"]
    assert lines["city"].startswith("!")
    assert "removed" in lines["label"] and "added" in lines["extra"]
    assert not lines["id"].startswith("!")
    rep = json.loads(run_kiln("data", "diff", a, b, "--json").stdout)
    cols = {c["name"]: c for c in rep["columns"]}
    assert cols["age"]["psi"] > 1 and cols["age"]["ks"] > 0.5
    assert abs(cols["age"]["mean"][1] - cols["age"]["mean"][0] - 30) < 1e-9
    assert cols["id"]["psi"] == 0 and cols["id"]["ks"] == 0
    assert cols["score"]["missing_rate"] == [0.1, 0.3]
    shares = {c["value"]: c["share"] for c in cols["city"]["categories"]}
    assert shares["NY"] == [0.25, 0.75]
    assert shares["LA, CA"] == [0.25, 0.0] and shares['say "SF"'] == [0.25, 0.0]
    assert cols["city"]["psi"] > 0.25
    assert cols["label"]["change"] == "removed" and cols["extra"]["change"] == "added"

    bad = run_kiln("data", "diff", a, tmp_path / "missing.csv", check=False)
    assert bad.returncode == 1 and "missing.csv" in bad.stderr
    nosnap = run_kiln("data", "diff", a, "sha256:abcdef12", "--store", tmp_path / "empty",
                      check=False)
    assert nosnap.returncode == 1 and "no snapshot sha256:abcdef12" in nosnap.stderr


# --- ingest ----------------------------------------------------------------------------------


def py_text(v):
    """A value as the CSV should hold it: NULL empty, floats as Python prints them."""
    if v is None:
        return ""
    return repr(v) if isinstance(v, float) else str(v)


SQL_ROWS = [
    (1, "plain", 2.0, None),
    (2, "a, b", 0.1, ""),
    (3, 'say "hi"', 1e20, "two\nlines"),
    (None, " padded ", -1.5e-05, "x"),
    (5, "big", 1234567.125, "y,\"z\""),
    (6, None, None, None),
]


def test_ingest_sqlite_matches_python(tmp_path):
    db = tmp_path / "src.db"
    con = sqlite3.connect(db)
    con.execute("CREATE TABLE items (id INTEGER, name TEXT, price REAL, note TEXT)")
    con.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", SQL_ROWS)
    con.commit()
    out = tmp_path / "items.csv"
    p = run_kiln("data", "ingest", "--from", f"sqlite:{db}", "--table", "items", "--out", out)
    assert "wrote 6 rows of 4 columns" in p.stderr
    got = read_csv(out)
    cur = con.execute("SELECT * FROM items")
    assert got[0] == [d[0] for d in cur.description]
    assert got[1:] == [[py_text(v) for v in row] for row in cur.fetchall()]

    q = "SELECT name, price * 2 AS twice FROM items WHERE id >= 2 ORDER BY id"
    out2 = tmp_path / "q.csv"
    store = tmp_path / "store"
    p = run_kiln("data", "ingest", "--from", f"sqlite://{db}", "--query", q, "--out", out2,
                 "--snapshot", "--store", store)
    digest = p.stdout.strip()
    assert (store / "sha256" / digest[7:] / "q.csv").exists()
    assert read_csv(out2)[1:] == [[py_text(v) for v in row] for row in con.execute(q)]
    con.close()

    err = run_kiln("data", "ingest", "--from", f"sqlite:{db}", "--query", "SELECT nope FROM items",
                   "--out", tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "SQL error: no such column: nope" in err.stderr
    assert not (tmp_path / "bad.csv").exists()
    err = run_kiln("data", "ingest", "--from", f"sqlite:{tmp_path / 'absent.db'}", "--table", "t",
                   "--out", tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "cannot open" in err.stderr
    assert not (tmp_path / "absent.db").exists()
    err = run_kiln("data", "ingest", "--from", "mysql://h/db", "--table", "t", "--out",
                   tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "expected postgresql://" in err.stderr
    usage = run_kiln("data", "ingest", "--from", f"sqlite:{db}", "--out", tmp_path / "x.csv",
                     check=False)
    assert usage.returncode == 2 and "--query" in usage.stderr


def test_ingest_postgres_matches_psql(pg, tmp_path):  # noqa: F811
    pg.sql("DROP TABLE IF EXISTS people")
    pg.sql("CREATE TABLE people (id integer, name text, amount numeric(10,2), "
           "score double precision, ok boolean, born date, note text)")
    pg.sql("INSERT INTO people VALUES "
           "(1, 'Ann', 12.50, 0.1, true, '1990-01-02', NULL), "
           "(2, 'Smith, John', -3.00, 1e20, false, NULL, ''), "
           "(3, 'say \"hi\"', NULL, NULL, NULL, '2001-12-31', E'two\\nlines'), "
           "(NULL, ' padded ', 0.00, -1.5e-05, true, '2020-02-29', 'x'), "
           "(5, NULL, 99999999.99, 3.141592653589793, false, NULL, 'a,\"b\"')")
    query = "SELECT * FROM people ORDER BY id NULLS LAST"
    out = tmp_path / "people.csv"
    p = run_kiln("data", "ingest", "--from", pg.uri, "--query", query, "--out", out)
    assert "wrote 5 rows of 7 columns" in p.stderr
    psql = subprocess.run([str(pg.bin / "psql"), "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                           "postgres", "-d", "postgres", "-X", "--csv", "-c", query],
                          capture_output=True, text=True, timeout=60, check=True)
    want = list(csv.reader(psql.stdout.splitlines(keepends=True)))
    assert read_csv(out) == want
    # NULL and the empty string stay apart in the file: psql writes "" for an empty string too.
    assert '2,"Smith, John",-3.00,1e+20,f,,""' in out.read_text()

    tab = tmp_path / "tab.csv"
    run_kiln("data", "ingest", "--from", pg.uri, "--table", "people", "--out", tab)
    assert len(read_csv(tab)) == 6

    err = run_kiln("data", "ingest", "--from", pg.uri, "--query", "SELECT * FROM nope",
                   "--out", tmp_path / "bad.csv", check=False)
    assert err.returncode == 1
    assert 'relation "nope" does not exist' in err.stderr
    assert not (tmp_path / "bad.csv").exists()
    err = run_kiln("data", "ingest", "--from", pg.uri, "--query", "CREATE TEMP TABLE t (a int)",
                   "--out", tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "returns no rows" in err.stderr
    dead = f"postgresql://kiln:hunter2@127.0.0.1:{_free_port()}/postgres"
    err = run_kiln("data", "ingest", "--from", dead, "--table", "people", "--out",
                   tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "cannot connect" in err.stderr
    assert "hunter2" not in err.stderr and "kiln:***@127.0.0.1" in err.stderr
    err = run_kiln("data", "ingest", "--from", "postgresql://[bad", "--table", "people", "--out",
                   tmp_path / "bad.csv", check=False)
    assert err.returncode == 1 and "postgresql://[bad" in err.stderr


# --- MLflow ----------------------------------------------------------------------------------


def test_snapshot_to_mlflow_artifacts(mlflow_server, tmp_path):
    from mlflow.tracking import MlflowClient

    env = mlflow_server.client_env()
    data = write_rows(tmp_path / "train.csv", HEADER, base_rows(50))
    c = MlflowClient(tracking_uri=mlflow_server.uri)
    exp = c.create_experiment("kiln-data-snap")
    run = c.create_run(exp)
    p = run_kiln("data", "snapshot", data, "--mlflow", "--run", run.info.run_id, "--name", "s",
                 env=env)
    digest = p.stdout.strip()
    local, _ = snapshot(data, tmp_path / "store")
    assert digest == local
    files = {f.path: f for f in c.list_artifacts(run.info.run_id, f"datasets/{digest[7:]}")}
    prefix = f"datasets/{digest[7:]}/"
    assert set(files) == {prefix + "train.csv", prefix + "manifest.json"}
    assert files[prefix + "train.csv"].file_size == data.stat().st_size
    got = c.download_artifacts(run.info.run_id, prefix + "manifest.json", str(tmp_path))
    manifest = json.loads(open(got).read())
    assert manifest["digest"] == digest and manifest["files"][0]["path"] == "train.csv"
    inputs = c.get_run(run.info.run_id).inputs.dataset_inputs
    assert [(i.dataset.name, i.dataset.digest) for i in inputs] == [("s", digest[7:43])]
    assert json.loads(inputs[0].dataset.profile)["digest"] == digest

    # Without --run: a new run in the named experiment, tagged with the digest, finished.
    p = run_kiln("data", "snapshot", data, "--mlflow", "--experiment", "kiln-data-snap2", env=env)
    run_id = p.stderr.split("uploaded to run ")[1].split()[0]
    r = c.get_run(run_id)
    assert r.data.tags["kiln.dataset_digest"] == digest and r.info.status == "FINISHED"
    assert [f.path for f in c.list_artifacts(run_id, "datasets")] == [f"datasets/{digest[7:]}"]

    bad = run_kiln("data", "snapshot", data, "--mlflow", "--run", "0" * 32, env=env, check=False)
    assert bad.returncode == 1 and "--mlflow" in bad.stderr


# --- checks ----------------------------------------------------------------------------------


@pytest.fixture
def checked(tmp_path):
    rows = [[i, 18 + i % 50, ["NY", "LA", "SF"][i % 3], "" if i % 20 == 0 else i * 10,
             "a" if i % 4 else "b"] for i in range(100)]
    return write_rows(tmp_path / "d.csv", ["id", "age", "city", "income", "label"], rows)


PASSING = """
min_rows: 100
columns: {id: numeric, age: numeric, city: categorical, income: numeric, label: any}
strict_columns: true
max_missing: {overall: 0.02, income: 0.05}
ranges: {age: [18, 67], income: {min: 0}}
label: {column: label, max_ratio: 3, min_share: 0.25}
"""


def test_checks_pass(checked, tmp_path):
    spec = tmp_path / "checks.yaml"
    spec.write_text(PASSING)
    report = tmp_path / "report.json"
    p = run_kiln("data", "check", checked, "--spec", spec, "--report", report)
    assert p.returncode == 0
    lines = p.stdout.splitlines()
    assert len(lines) == 13 and all(line.startswith("PASS") for line in lines), p.stdout
    assert "label: class \"a\" has 75 rows, \"b\" 25: ratio 3 <= 3" in p.stdout
    rep = json.loads(report.read_text())
    assert rep["passed"] is True and len(rep["checks"]) == 13
    # The same block inside a pipeline config works too.
    cfg = tmp_path / "pipeline.yaml"
    cfg.write_text("data: {train: d.csv}\nchecks:\n" + "".join(
        "  " + line + "\n" for line in PASSING.strip().splitlines()))
    assert run_kiln("data", "check", checked, "--spec", cfg).returncode == 0


@pytest.mark.parametrize("spec,name,message", [
    ("min_rows: 101", "min_rows", "100 rows < 101"),
    ("columns: {age: categorical}", "column:age", "age: numeric, expected categorical"),
    ("columns: {zip: any}", "column:zip", "zip: no such column"),
    ("columns: {id: any, age: any}\nstrict_columns: true", "strict_columns",
     "3 unexpected columns: city, income, label"),
    ("max_missing: 0.009", "missing:overall", "1% of cells missing (5 of 500) > 0.9%"),
    ("max_missing: {income: 0.04}", "missing:income", "income: 5% missing (5 of 100) > 4%"),
    ("ranges: {age: [20, 60]}", "range:age", "age: min 18, max 67 outside [20, 60]"),
    ("ranges: {city: [0, 1]}", "range:city", "not numeric"),
    ("label: {max_ratio: 2.5}", "label:max_ratio", "ratio 3 > 2.5"),
    ("label: {min_share: 0.3}", "label:min_share", "smallest class \"b\" has 25% of 100 rows < 30%"),
])
def test_checks_fail(checked, tmp_path, spec, name, message):
    path = tmp_path / "checks.yaml"
    path.write_text(spec + "\n")
    report = tmp_path / "report.json"
    p = run_kiln("data", "check", checked, "--spec", path, "--report", report, check=False)
    assert p.returncode == 1, p.stdout + p.stderr
    line = next(line for line in p.stdout.splitlines() if line.split()[1] == name)
    assert line.startswith("FAIL") and message in line, line
    assert "checks failed" in p.stderr
    rep = json.loads(report.read_text())
    assert rep["passed"] is False
    assert any(c["name"] == name and not c["passed"] for c in rep["checks"])


def test_checks_bad_spec(checked, tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("min_rowz: 3\n")
    p = run_kiln("data", "check", checked, "--spec", spec, check=False)
    assert p.returncode == 1 and 'unknown key "min_rowz"' in p.stderr and "bad.yaml" in p.stderr
    p = run_kiln("data", "check", checked, check=False)
    assert p.returncode == 2
