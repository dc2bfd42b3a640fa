"""`kiln approve` and `kiln rollback` against a real MLflow registry: the aliases champion and
previous move as a person expects, the sign-off is recorded in the version's tags, and bad
requests (no --by, an unknown version, nothing to roll back to) are refused with a clear message."""

import time

import pytest

from conftest import mlflow_or_skip, run_kiln


@pytest.fixture
def registered(mlflow_server):
    mlflow_or_skip()
    from mlflow import MlflowClient

    c = MlflowClient(mlflow_server.uri)
    name = f"promo-{time.time_ns()}"
    c.create_registered_model(name)
    exp = c.create_experiment(name)
    for _ in range(3):
        run = c.create_run(exp)
        c.create_model_version(name, source=f"runs:/{run.info.run_id}/model",
                               run_id=run.info.run_id)
    return c, name, mlflow_server.client_env()


def aliases(c, name):
    return dict(c.get_registered_model(name).aliases)


def test_approve_promotes_and_records_the_sign_off(registered):
    c, name, env = registered
    p = run_kiln("approve", name, "1", "--by", "alice", "--note", "first model", env=env)
    assert "approved by alice" in p.stdout
    assert aliases(c, name) == {"champion": "1"}
    run_kiln("approve", name, "2", "--by", "bob", env=env)
    assert aliases(c, name) == {"champion": "2", "previous": "1"}
    tags = c.get_model_version(name, "2").tags
    assert tags["kiln.approval"] == "approved" and tags["kiln.approved_by"] == "bob"
    assert "kiln.approved_at" in tags and "kiln.promoted_at" in tags
    assert c.get_model_version(name, "1").tags["kiln.approval_note"] == "first model"
    assert c.get_model_version(name, "1").tags["kiln.superseded_by"] == "2"


def test_rollback_goes_back_to_previous(registered):
    c, name, env = registered
    p = run_kiln("rollback", name, env=env, check=False)
    assert p.returncode == 1 and 'no alias "previous"' in p.stderr
    run_kiln("approve", name, "1", "--by", "alice", env=env)
    run_kiln("approve", name, "3", "--by", "alice", env=env)
    p = run_kiln("rollback", name, env=env)
    assert "champion 3 -> 1" in p.stdout
    assert aliases(c, name)["champion"] == "1"
    assert "kiln.rolled_back_at" in c.get_model_version(name, "3").tags
    p = run_kiln("rollback", name, env=env, check=False)
    assert p.returncode == 1 and "already is version 1" in p.stderr


def test_bad_requests_are_refused(registered):
    c, name, env = registered
    p = run_kiln("approve", name, "1", env=env, check=False)
    assert p.returncode == 2 and "--by WHO" in p.stderr
    p = run_kiln("approve", name, "99", "--by", "alice", env=env, check=False)
    assert p.returncode == 1 and "version 99" in p.stderr
    assert aliases(c, name) == {}
