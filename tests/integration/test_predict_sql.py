"""`kiln predict --output sqlite:... | postgresql://...`: batch predictions into a real SQLite file
and a real PostgreSQL server (Debian's `postgresql`, started for this module on loopback), in
chunks, resumable.

Every row stored must equal `kiln predict`'s CSV output for the same input (the database keeps the
CSV's 9-digit numbers, so the comparison is exact). A run killed with SIGKILL between chunks keeps
whole chunks only, and the same command run again stores the rest, each row exactly once. To kill
it mid-job deterministically, the test holds a lock the writer needs for its next commit (a read
transaction on the SQLite file; LOCK TABLE ... IN SHARE MODE on PostgreSQL) once some chunks are
in. SIGTERM stops it after the chunk in flight with a message that says how to finish. Bad targets
(unreachable server, bad URI, unwritable file, bad table name, a table of another input or shape)
fail with exit code 1 and a precise message.

The kiln binary is $KILN_BIN (default: build/kiln in the repository). psycopg is not needed: the
PostgreSQL checks go through `psql -At`.
"""

import csv
import glob
import os
import shutil
import signal
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import KILN, _free_port, run_kiln, write_dataset

BIG_ROWS = 20000  # the input the interruption tests score
CHUNK = 250  # their --chunk-rows: 80 chunks


def read_csv_predictions(path):
    """[(index, prediction, {label: prob})] from kiln predict's CSV output."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    assert head[:2] == ["index", "prediction"]
    labels = [h[len("prob_"):] for h in head[2:]]
    return [(int(r[0]), r[1], {c: float(v) for c, v in zip(labels, r[2:])}) for r in rows[1:]]


class Bundle:
    """A model `kiln train` made from a tiny CSV, two inputs, and their CSV predictions."""

    def __init__(self, root):
        self.root = root
        self.train = root / "train.csv"
        write_dataset(self.train, 200, 5)
        self.model = root / "model"
        cfg = root / "cfg.yaml"
        cfg.write_text(
            f"data: {{format: csv, train: {self.train}, label_column: label, "
            "val_fraction: 0.2, transform: standard}\n"
            "model: {layers: 6-16-3, activation: tanh, dropout: 0.0, task: classification}\n"
            "optim: {name: adamw, lr: 0.01}\n"
            "train: {batch_size: 32, epochs: 3, seed: 1, threads: 1}\n"
            f"output: {self.model}\n"
        )
        run_kiln("train", "--config", cfg)
        self.big = root / "big.csv"
        write_dataset(self.big, BIG_ROWS, 7)
        self.expected = {}
        for name, data in (("train", self.train), ("big", self.big)):
            out = root / f"{name}.preds.csv"
            run_kiln("predict", "--model", self.model, "--input", data, "--output", out)
            self.expected[name] = read_csv_predictions(out)

    def predict(self, data, output, *extra, check=True):
        return run_kiln("predict", "--model", self.model, "--input", data, "--output", output,
                        *extra, check=check)

    def start(self, data, output, *extra):
        return subprocess.Popen(
            [str(KILN), "predict", "--model", str(self.model), "--input", str(data), "--output",
             output, *map(str, extra)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return Bundle(tmp_path_factory.mktemp("predict_sql"))


PROBS = [f"prob_{c}" for c in ("blue", "green", "red")]  # the bundle's classes, sorted
COLUMNS = ["row_index", "prediction", *PROBS, "model", "input_digest", "scored_at"]


def assert_rows_match(rows, expected, first=0):
    """rows: [(row_index, prediction, prob_blue, prob_green, prob_red)] from a table, in order,
    equal to the CSV's rows first.. (exactly: both hold the same 9-digit numbers)."""
    assert [r[0] for r in rows] == list(range(first, first + len(rows)))
    for r in rows:
        index, pred, probs = expected[r[0]]
        assert r[1] == pred, f"row {index}: {r[1]!r} != {pred!r}"
        got = dict(zip(("blue", "green", "red"), map(float, r[2:5])))
        assert got == probs, f"row {index}: {got} != {probs}"


def fail_with(p, *fragments):
    assert p.returncode == 1, f"exit {p.returncode}:\n{p.stderr}"
    assert "Traceback" not in p.stderr and "Segmentation" not in p.stderr
    for f in fragments:
        assert f in p.stderr, f"{f!r} not in:\n{p.stderr}"


# --- SQLite -----------------------------------------------------------------------------------


def sqlite_rows(path, table="predictions"):
    with sqlite3.connect(path) as con:
        return con.execute(
            f'SELECT row_index, prediction, {", ".join(PROBS)} FROM "{table}" ORDER BY row_index'
        ).fetchall()


def test_sqlite_matches_csv(bundle, tmp_path):
    db = tmp_path / "preds.db"
    p = bundle.predict(bundle.train, f"sqlite:{db}", "--chunk-rows", 64)
    assert "200 rows in table \"predictions\" in sqlite:" in p.stderr
    assert "(200 stored now, 0 already there)" in p.stderr
    assert "accuracy" in p.stderr
    assert_rows_match(sqlite_rows(db), bundle.expected["train"])
    with sqlite3.connect(db) as con:
        cols = [r[1] for r in con.execute("PRAGMA table_info(predictions)")]
        assert cols == COLUMNS
        meta = con.execute("SELECT DISTINCT model, input_digest FROM predictions").fetchall()
        stamps = con.execute("SELECT DISTINCT scored_at FROM predictions").fetchall()
    assert meta == [(str(bundle.model), meta[0][1])] and meta[0][1].startswith("sha256:")
    assert 1 <= len(stamps) <= 4  # one stamp per chunk of 64
    for (s,) in stamps:
        assert s.endswith("Z") and s[10] == "T"
    # The same command again: everything is there, nothing is added.
    p = bundle.predict(bundle.train, f"sqlite:{db}", "--chunk-rows", 64)
    assert "(0 stored now, 200 already there)" in p.stderr
    assert len(sqlite_rows(db)) == 200
    # sqlite:///ABSOLUTE/PATH with another table, beside the first in the same file.
    p = bundle.predict(bundle.train, f"sqlite://{db}?table=second")
    assert_rows_match(sqlite_rows(db, "second"), bundle.expected["train"])


def test_csv_output_unchanged(bundle, tmp_path):
    out = tmp_path / "p.csv"
    bundle.predict(bundle.train, out)
    assert read_csv_predictions(out) == bundle.expected["train"]
    p = bundle.predict(bundle.train, "-")
    assert p.stdout.splitlines()[0] == "index,prediction," + ",".join(PROBS)
    assert len(p.stdout.splitlines()) == 201


def hold_sqlite_once_rows(path, proc, timeout=120):
    """Polls (every millisecond, on one connection) until the table holds rows, then returns
    that connection inside a read transaction, which keeps kiln from committing its next chunk,
    and the row count it saw. No busy wait: while kiln commits, a reader is refused, and
    SQLite's growing back-off would let kiln run to the end."""
    deadline = time.monotonic() + timeout
    con = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"kiln predict ended (exit {proc.returncode}) before any check:"
                                 f"\n{proc.stderr.read()}")
        if con is None and path.exists():
            con = sqlite3.connect(path, isolation_level=None, timeout=0)
        if con is not None:
            con.execute("BEGIN")
            try:
                n = con.execute("SELECT count(*) FROM predictions").fetchone()[0]
            except sqlite3.OperationalError:  # no table yet, or kiln is committing
                n = 0
            if n:
                return con, n
            con.execute("ROLLBACK")
        time.sleep(0.001)
    proc.kill()
    raise AssertionError("no rows appeared in time")


def test_sqlite_resume_after_sigkill(bundle, tmp_path):
    db = tmp_path / "big.db"
    target = f"sqlite:{db}"
    proc = bundle.start(bundle.big, target, "--chunk-rows", CHUNK)
    con, seen = hold_sqlite_once_rows(db, proc)
    assert 0 < seen < BIG_ROWS and seen % CHUNK == 0, seen
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    con.execute("ROLLBACK")
    con.close()
    # Only whole chunks: exactly the rows committed before the kill, all correct.
    rows = sqlite_rows(db)
    assert len(rows) == seen
    assert_rows_match(rows, bundle.expected["big"])
    # The same command finishes the job.
    p = bundle.predict(bundle.big, target, "--chunk-rows", CHUNK)
    assert f"({BIG_ROWS - seen} stored now, {seen} already there)" in p.stderr
    assert "(rows scored by this run)" in p.stderr
    rows = sqlite_rows(db)
    assert len(rows) == BIG_ROWS
    assert_rows_match(rows, bundle.expected["big"])


def test_sqlite_sigterm_stops_after_the_chunk(bundle, tmp_path):
    db = tmp_path / "term.db"
    target = f"sqlite:{db}"
    proc = bundle.start(bundle.big, target, "--chunk-rows", CHUNK)
    con, seen = hold_sqlite_once_rows(db, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    con.execute("ROLLBACK")  # let the chunk in flight commit
    con.close()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    stored = seen + CHUNK
    assert (f"interrupted: {stored} of {BIG_ROWS} rows are stored in table \"predictions\" in "
            f"{target}; run the same command again to finish") in err
    assert len(sqlite_rows(db)) == stored
    p = bundle.predict(bundle.big, target, "--chunk-rows", CHUNK)
    assert f"{stored} already there" in p.stderr
    assert_rows_match(sqlite_rows(db), bundle.expected["big"])


def test_sqlite_refusals(bundle, tmp_path):
    db = tmp_path / "r.db"
    bundle.predict(bundle.train, f"sqlite:{db}")
    before = sqlite_rows(db)
    p = bundle.predict(bundle.big, f"sqlite:{db}", check=False)
    fail_with(p, f'table "predictions" in sqlite:{db} holds 200 rows scored from another input',
              "pick another table (?table=NAME) or drop it")
    p = bundle.predict(bundle.train, f"sqlite:{db}", "--no-resume", check=False)
    fail_with(p, "already holds 200 rows and resuming is off")
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE other (row_index INTEGER PRIMARY KEY, prediction TEXT, "
                    "prob_cat REAL, model TEXT, input_digest TEXT, scored_at TEXT)")
    p = bundle.predict(bundle.train, f"sqlite:{db}?table=other", check=False)
    fail_with(p, 'table "other"', 'exists with other columns: it lacks "prob_blue", '
              '"prob_green", "prob_red"; has unexpected "prob_cat"')
    assert sqlite_rows(db) == before  # nothing lost, nothing added


@pytest.mark.parametrize("target,message", [
    ("sqlite:{tmp}/no/such/dir/p.db", "sqlite:{tmp}/no/such/dir/p.db: cannot open: unable to "
                                      "open database file"),
    ("sqlite:{tmp}", "cannot open"),
    ("sqlite:{tmp}/p.db?table=bad-name", 'table name "bad-name" is not an SQL identifier'),
    ("sqlite:{tmp}/p.db?table=x;drop", 'table name "x;drop" is not an SQL identifier'),
    ("sqlite:{tmp}/p.db?colour=red", 'unknown option "colour=red" (only table=NAME)'),
    ("sqlite://somehost/p.db", "a host is not allowed here"),
    ("mysql://user:hunter2@localhost/db", 'unsupported database "mysql"'),
    ("postgresql://kiln:hunter2@127.0.0.1:{port}/db", "postgresql://kiln:***@127.0.0.1:{port}/db: "
                                                       "cannot connect: connection to server at"),
    ("postgresql://127.0.0.1:notaport/db", 'invalid integer value "notaport"'),
    ("postgres://127.0.0.1:{port}/db?table=1st", 'table name "1st" is not an SQL identifier'),
])
def test_bad_targets(bundle, tmp_path, target, message):
    port = _free_port()  # nothing listens there
    target = target.format(tmp=tmp_path, port=port)
    p = bundle.predict(bundle.train, target, check=False)
    fail_with(p, message.format(tmp=tmp_path, port=port))
    assert p.stderr.startswith("kiln predict: ")
    assert "hunter2" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


# --- PostgreSQL -------------------------------------------------------------------------------


def _pg_bin():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda d: int(d.split("/")[-2]))
    for d in reversed(dirs):
        if all(os.path.exists(os.path.join(d, b)) for b in ("initdb", "pg_ctl", "psql")):
            return Path(d)
    return None


class PgServer:
    """A throwaway PostgreSQL cluster: initdb into a fresh folder owned by the server's user
    (postgres when we run as root: the server refuses root), trust auth, TCP on 127.0.0.1 only,
    its socket in the same folder."""

    def __init__(self, bindir):
        self.bin = bindir
        self.root = Path(tempfile.mkdtemp(prefix="kiln-pg-"))
        self.port = _free_port()
        self.as_user = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.data = self.root / "data"
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args, timeout=120):
        p = subprocess.run([*self.as_user, *map(str, args)], capture_output=True, text=True,
                           timeout=timeout)
        if p.returncode:
            raise AssertionError(f"{' '.join(map(str, args))} exited {p.returncode}:\n"
                                 f"{p.stdout}\n{p.stderr}")
        return p

    def start(self):
        self._run(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._run(self.bin / "pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w",
                  "-t", "60", "-o", opts, "start")
        return self

    def stop(self):
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_user, str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                            "immediate", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def psql_cmd(self):
        return [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                "-d", "postgres", "-X", "-At", "-F", "\t", "-v", "ON_ERROR_STOP=1"]

    def sql(self, query, check=True):
        """Rows of a query as lists of text fields (psql -At)."""
        p = subprocess.run([*self.psql_cmd(), "-c", query], capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode:
            raise AssertionError(f"psql {query!r}: {p.stderr}")
        if p.returncode:
            return None
        return [line.split("\t") for line in p.stdout.splitlines()]

    def rows(self, table):
        return self.sql(f'SELECT row_index, prediction, {", ".join(PROBS)} FROM "{table}" '
                        "ORDER BY row_index")

    def count(self, table):
        r = self.sql(f'SELECT count(*) FROM "{table}"', check=False)
        return int(r[0][0]) if r else 0


@pytest.fixture(scope="module")
def pg():
    bindir = _pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin "
                    "(apt-get install postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as postgres")
    server = PgServer(bindir)
    try:
        server.start()
    except AssertionError:
        log = server.root / "server.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        server.stop()
        raise AssertionError(f"PostgreSQL did not start:\n{tail}")
    yield server
    server.stop()


def test_postgres_matches_csv(bundle, pg):
    target = f"{pg.uri}?table=small"
    p = bundle.predict(bundle.train, target, "--chunk-rows", 64)
    assert f'200 rows in table "small" in {pg.uri}' in p.stderr
    assert_rows_match([(int(r[0]), *r[1:]) for r in pg.rows("small")], bundle.expected["train"])
    types = pg.sql("SELECT column_name, data_type FROM information_schema.columns "
                   "WHERE table_name = 'small' ORDER BY ordinal_position")
    assert types == [["row_index", "bigint"], ["prediction", "text"],
                     *[[c, "double precision"] for c in PROBS], ["model", "text"],
                     ["input_digest", "text"], ["scored_at", "timestamp with time zone"]]
    assert pg.sql("SELECT DISTINCT model FROM small") == [[str(bundle.model)]]
    assert 1 <= int(pg.sql("SELECT count(DISTINCT scored_at) FROM small")[0][0]) <= 4
    pk = pg.sql("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
                "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'small'::regclass "
                "AND i.indisprimary")
    assert pk == [["row_index"]]
    # Again: nothing added; the default table name; libpq's own parameters pass through.
    p = bundle.predict(bundle.train, target, "--chunk-rows", 64)
    assert "(0 stored now, 200 already there)" in p.stderr
    assert pg.count("small") == 200
    bundle.predict(bundle.train, pg.uri.replace("postgresql://", "postgres://")
                   + "?connect_timeout=5")
    assert pg.count("predictions") == 200


def lock_pg_once_rows(pg, table):
    """Starts a psql session that waits, inside the server (a DO block polling every
    millisecond), for the table to hold rows, then takes LOCK TABLE ... IN SHARE MODE: kiln's
    next COPY waits for it. Start it before kiln, so no chunk slips past."""
    holder = subprocess.Popen(pg.psql_cmd(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    holder.stdin.write(
        "BEGIN;\n"
        "DO $$ DECLARE found boolean := false; BEGIN\n"
        "  WHILE NOT found LOOP\n"
        "    BEGIN\n"  # parsing the query locks the table, which reads the catalog afresh
        f"      EXECUTE 'SELECT EXISTS (SELECT 1 FROM \"{table}\")' INTO found;\n"
        "    EXCEPTION WHEN undefined_table THEN found := false;\n"
        "    END;\n"
        "    IF NOT found THEN PERFORM pg_sleep(0.001); END IF;\n"
        "  END LOOP;\n"
        f"  EXECUTE 'LOCK TABLE \"{table}\" IN SHARE MODE';\n"
        "END $$;\n")
    holder.stdin.flush()
    return holder


def wait_pg_lock(pg, table, holder, proc, timeout=120):
    """Waits until the holder has the lock; returns the rows the table then holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            holder.kill()
            raise AssertionError(f"kiln predict ended (exit {proc.returncode}) before the lock:"
                                 f"\n{proc.stderr.read()}")
        if holder.poll() is not None:
            proc.kill()
            raise AssertionError(f"psql holding the lock ended: {holder.stderr.read()}")
        granted = pg.sql("SELECT count(*) FROM pg_locks WHERE mode = 'ShareLock' AND granted "
                         f"AND relation = to_regclass('\"{table}\"')")
        if granted == [["1"]]:
            return pg.count(table)
        time.sleep(0.01)
    holder.kill()
    proc.kill()
    raise AssertionError("could not lock the table")


def wait_no_kiln_sessions(pg, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.sql("SELECT count(*) FROM pg_stat_activity "
                  "WHERE application_name = 'kiln predict'") == [["0"]]:
            return
        time.sleep(0.05)
    raise AssertionError("kiln's session did not end")


def test_postgres_resume_after_sigkill(bundle, pg):
    target = f"{pg.uri}?table=big"
    holder = lock_pg_once_rows(pg, "big")
    proc = bundle.start(bundle.big, target, "--chunk-rows", CHUNK)
    seen = wait_pg_lock(pg, "big", holder, proc)
    assert 0 < seen < BIG_ROWS and seen % CHUNK == 0, seen
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    holder.stdin.close()  # psql exits, its session ends, the lock goes
    holder.wait(timeout=30)
    wait_no_kiln_sessions(pg)  # the killed run's COPY, if it had started, is rolled back
    rows = pg.rows("big")
    assert len(rows) == seen
    assert_rows_match([(int(r[0]), *r[1:]) for r in rows], bundle.expected["big"])
    p = bundle.predict(bundle.big, target, "--chunk-rows", CHUNK)
    assert f"({BIG_ROWS - seen} stored now, {seen} already there)" in p.stderr
    rows = pg.rows("big")
    assert len(rows) == BIG_ROWS
    assert_rows_match([(int(r[0]), *r[1:]) for r in rows], bundle.expected["big"])
    assert pg.sql("SELECT count(DISTINCT row_index) FROM big") == [[str(BIG_ROWS)]]


def test_postgres_sigterm_then_resume(bundle, pg):
    target = f"{pg.uri}?table=term"
    holder = lock_pg_once_rows(pg, "term")
    proc = bundle.start(bundle.big, target, "--chunk-rows", CHUNK)
    seen = wait_pg_lock(pg, "term", holder, proc)
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.2)
    holder.stdin.close()
    holder.wait(timeout=30)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert "interrupted:" in err and "run the same command again to finish" in err
    assert "postgresql://postgres@127.0.0.1" in err
    stored = pg.count("term")
    assert stored in (seen, seen + CHUNK), (seen, stored, err)
    assert f"interrupted: {stored} of {BIG_ROWS} rows are stored" in err
    p = bundle.predict(bundle.big, target, "--chunk-rows", CHUNK)
    assert f"{stored} already there" in p.stderr
    rows = pg.rows("term")
    assert_rows_match([(int(r[0]), *r[1:]) for r in rows], bundle.expected["big"])
    assert len(rows) == BIG_ROWS


def test_postgres_refusals(bundle, pg):
    target = f"{pg.uri}?table=refuse"
    bundle.predict(bundle.train, target)
    p = bundle.predict(bundle.big, target, check=False)
    fail_with(p, f'table "refuse" in {pg.uri} holds 200 rows scored from another input',
              "pick another table (?table=NAME) or drop it")
    p = bundle.predict(bundle.train, target, "--no-resume", check=False)
    fail_with(p, "already holds 200 rows and resuming is off")
    pg.sql('CREATE TABLE "Other" (row_index bigint, prediction text, prob_blue float8, '
           "prob_green float8, prob_red float8, model text, input_digest text, "
           "scored_at timestamptz)")
    p = bundle.predict(bundle.train, f"{pg.uri}?table=Other", check=False)
    fail_with(p, 'table "Other"', 'its primary key is missing, not ("row_index")')
    pg.sql('CREATE TABLE shaped (row_index bigint PRIMARY KEY, "PREDICTION" text)')
    p = bundle.predict(bundle.train, f"{pg.uri}?table=shaped", check=False)
    fail_with(p, 'exists with other columns: it lacks "prediction", "prob_blue"',
              'has unexpected "PREDICTION"')
    p = bundle.predict(bundle.train, f"postgresql://nobody@127.0.0.1:{pg.port}/postgres",
                       check=False)
    fail_with(p, 'cannot connect', 'role "nobody" does not exist')
    p = bundle.predict(bundle.train, f"postgresql://postgres@127.0.0.1:{pg.port}/nosuchdb",
                       check=False)
    fail_with(p, 'database "nosuchdb" does not exist')
    p = bundle.predict(bundle.train, f"{pg.uri}?sslmod=require", check=False)
    fail_with(p, 'invalid URI query parameter: "sslmod"')
    assert pg.count("refuse") == 200
