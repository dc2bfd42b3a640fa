"""Alert rules in `kiln serve --alerts FILE`, end to end on loopback:

- the drift scenario: held-out rows of the training distribution raise no alert; shifted rows
  push the live PSI over the threshold, the rule fires after its `for`, a webhook receiver run
  by the test gets the firing event (JSON with Slack's "text" and the fields), the retraining
  command runs exactly once with the evidence (the alert and the model's drift gauges), and
  rows of the training distribution again resolve it (a resolved event arrives);
- GET /alerts lists the active alert while it fires; kiln_alerts_firing says so on /metrics;
- a webhook that does not answer costs nothing but a counted, logged failure;
- the loop back to training with the real thing: a rule with `retrain: {pipeline: ...}` runs
  `kiln pipeline run` against a real MLflow server, whose parent run carries the trigger and the
  evidence as an artifact, and registers a new version;
- a malformed rules file stops `kiln serve` at start with a message naming the rule and key.
"""

import json
import subprocess
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import KILN, REPO, _free_port, mlflow_or_skip
from test_drift_serving import Server, setup, value  # noqa: F401  (setup is a fixture)
from test_pipeline import data, pipeline_yaml  # noqa: F401  (data is a fixture)

THRESHOLD = 0.25


class Receiver:
    """A webhook receiver on loopback: keeps every JSON body POSTed to it."""

    def __init__(self):
        self.events, self.lock = [], threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with outer.lock:
                    outer.events.append((self.path, self.headers.get("Content-Type"),
                                         json.loads(body)))
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok")  # what Slack answers

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/kiln"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def wait(self, status, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                got = [e for e in self.events if e[2].get("status") == status]
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError(f"no {status} event reached the webhook: {self.events}")

    def close(self):
        self.httpd.shutdown()


def rules(d, webhook, retrain_log):
    f = d / "alerts.yaml"
    f.write_text(
        "interval: 200ms\n"
        f"webhook: {webhook}\n"
        "retrain:\n"
        f"  command: 'echo \"$KILN_ALERT_RULE|$KILN_ALERT_REASON\" >> {retrain_log}; "
        f"cp \"$KILN_ALERT_EVIDENCE\" {retrain_log}.evidence.json'\n"
        "  cooldown: 1h\n"
        f"  evidence_dir: {d / 'evidence'}\n"
        "rules:\n"
        "  - name: InputDrift\n"
        "    metric: kiln_drift_psi_max\n"
        "    comparison: '>'\n"
        f"    threshold: {THRESHOLD}\n"
        "    for: 600ms\n"
        "    severity: critical\n"
        "    summary: 'input drift on {model} v{version}: PSI {value}'\n"
        "    retrain: true\n"
        "  - name: Errors\n"
        "    metric: kiln_inference_requests_failure_total\n"
        "    comparison: '>'\n"
        "    threshold: 1\n"
        "    window: 10s\n"
    )
    return f


def unlabelled(page, name):
    """The value of a metric without labels, or None."""
    for line in page.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def alerts(s):
    with urllib.request.urlopen(f"http://{s.http}/alerts", timeout=30) as r:
        return json.loads(r.read())


def test_drift_fires_the_webhook_and_retrains_once(setup, tmp_path):  # noqa: F811
    d, held, shifted, model = setup
    hook = Receiver()
    ran = tmp_path / "retrain.log"
    s = Server("--drift-window", "400", "--drift-interval", "0.2", "--alerts",
               rules(tmp_path, hook.url, ran), models=[f"m={model}"])
    try:
        # Held-out rows of the training distribution: stable, nothing fires.
        s.send("m", held)
        time.sleep(2.0)  # ten evaluations, more than the rule's `for`
        page = s.metrics()
        assert value(page, "kiln_drift_psi_max", model="m", version="1") < THRESHOLD
        assert value(page, "kiln_alerts_firing", rule="InputDrift") == 0
        assert hook.events == []
        assert alerts(s)["alerts"] == []
        assert not ran.exists()

        # Shifted rows fill the window: the PSI crosses, the rule fires after `for`.
        s.send("m", shifted)
        (_, ctype, ev), = hook.wait("firing")[:1]
        assert ctype == "application/json"
        assert ev["rule"] == "InputDrift" and ev["severity"] == "critical"
        assert ev["labels"] == {"model": "m", "version": "1"}
        assert ev["metric"] == "kiln_drift_psi_max" and ev["comparison"] == ">"
        assert ev["threshold"] == THRESHOLD and ev["value"] > THRESHOLD
        assert ev["text"].startswith("[FIRING] InputDrift (critical)")  # what Slack shows
        assert "input drift on m v1" in ev["summary"]
        page = s.metrics()
        assert value(page, "kiln_alerts_firing", rule="InputDrift") == 1
        assert value(page, "kiln_drift_psi_max", model="m", version="1") > THRESHOLD
        active = alerts(s)["alerts"]
        assert [(a["rule"], a["state"]) for a in active] == [("InputDrift", "firing")]

        # The retraining runs once, with the evidence.
        end = time.time() + 30
        while time.time() < end and not (ran.with_suffix(".log.evidence.json").exists()):
            time.sleep(0.05)
        evidence = json.loads(ran.with_suffix(".log.evidence.json").read_text())
        assert evidence["alert"]["rule"] == "InputDrift"
        psi = {k: v for k, v in evidence["metrics"].items() if k.startswith("kiln_drift_psi{")}
        assert psi and max(psi.values()) > THRESHOLD  # the features that moved are named
        s.send("m", shifted)  # still drifting: the same episode
        time.sleep(1.0)
        assert ran.read_text().count("InputDrift|") == 1
        assert "alert InputDrift: kiln_drift_psi_max{model=\"m\",version=\"1\"} > 0.25" in \
            ran.read_text()
        page = s.metrics()
        assert value(page, "kiln_retrain_triggers_total", rule="InputDrift",
                     outcome="started") == 1
        assert value(page, "kiln_alert_notifications_total", outcome="sent") >= 1

        # Back to the training distribution: resolved.
        s.send("m", held)
        (_, _, ev), = hook.wait("resolved")[:1]
        assert ev["rule"] == "InputDrift" and ev["value"] < THRESHOLD
        assert ev["text"].startswith("[RESOLVED] InputDrift")
        assert alerts(s)["alerts"] == []
        assert [e[2]["status"] for e in hook.events] == ["firing", "resolved"]
        assert all(e[0] == "/hooks/kiln" for e in hook.events)
    finally:
        assert s.stop() == 0
        hook.close()
    err = s.proc.stderr.read()
    assert "alert [FIRING] InputDrift" in err and "alert [RESOLVED] InputDrift" in err
    assert "retraining started" in err


def test_unreachable_webhook_is_counted_and_logged(setup, tmp_path):  # noqa: F811
    d, held, shifted, model = setup
    dead = f"http://127.0.0.1:{_free_port()}/hook"  # nothing listens there
    f = tmp_path / "alerts.yaml"
    f.write_text("interval: 100ms\n"
                 f"webhook: {{url: {dead}, timeout: 1s}}\n"
                 "rules:\n"
                 "  - {name: Loaded, metric: kiln_model_versions_loaded, comparison: '>=',"
                 " threshold: 1}\n")
    s = Server("--alerts", f, models=[f"m={model}"])
    try:
        end = time.time() + 30
        while time.time() < end:
            if value(s.metrics(), "kiln_alert_notifications_total", outcome="failed"):
                break
            time.sleep(0.1)
        page = s.metrics()
        assert value(page, "kiln_alert_notifications_total", outcome="failed") == 1
        assert value(page, "kiln_alerts_firing", rule="Loaded") == 1
        s.send("m", held[:8])  # and the server answers as ever
    finally:
        assert s.stop() == 0
    err = s.proc.stderr.read()
    assert "alert webhook:" in err and "[FIRING] Loaded" in err


def test_retrain_runs_the_pipeline_with_evidence(setup, data, mlflow_server, tmp_path):  # noqa: F811
    mlflow_or_skip()
    from mlflow import MlflowClient

    _, held, _, model = setup
    name = f"alerted-{time.time_ns()}"
    pipe = pipeline_yaml(data, name, tmp_path / "work")
    f = tmp_path / "alerts.yaml"
    f.write_text("interval: 100ms\n"
                 f"retrain: {{pipeline: {pipe}, evidence_dir: {tmp_path / 'evidence'}}}\n"
                 "rules:\n"
                 "  - {name: Served, metric: kiln_model_versions_loaded, comparison: '>=',"
                 " threshold: 1, retrain: true}\n")
    env = mlflow_server.client_env(KILN_MODEL_CACHE=str(tmp_path / "cache"))
    s = Server("--alerts", f, models=[f"m={model}"], env=env)
    try:
        end = time.time() + 120
        while time.time() < end:
            page = s.metrics()
            if value(page, "kiln_retrain_triggers_total", rule="Served", outcome="started") and \
                    unlabelled(page, "kiln_retrain_running") == 0:
                break
            time.sleep(0.2)
        page = s.metrics()
        assert value(page, "kiln_retrain_triggers_total", rule="Served", outcome="started") == 1
        assert unlabelled(page, "kiln_retrain_running") == 0
    finally:
        assert s.stop() == 0
    err = s.proc.stderr.read()
    assert "finished with exit code 0" in err, err
    c = MlflowClient(mlflow_server.uri)
    exp = c.get_experiment_by_name(name)
    parents = [r for r in c.search_runs([exp.experiment_id])
               if r.data.tags.get("kiln.pipeline") == name]
    assert len(parents) == 1
    tags = parents[0].data.tags
    assert tags["kiln.trigger"].startswith("alert Served: kiln_model_versions_loaded{model=\"m\"}")
    evidence = tags["kiln.trigger.evidence"]
    assert evidence.startswith("trigger/kiln-alert-Served-") and evidence.endswith(".json")
    local = c.download_artifacts(parents[0].info.run_id, evidence, str(tmp_path))
    assert json.loads(open(local).read())["alert"]["rule"] == "Served"
    assert dict(c.get_registered_model(name).aliases) == {"champion": "1"}


@pytest.mark.parametrize("text,says", [
    ("rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, colour: red}\n",
     "alerts.rules[0] (A).colour: unknown key"),
    ("rules:\n  - {name: A, metric: m, comparison: '>', threshold: 1, retrain: true}\n",
     "no retrain: {pipeline or command} is configured"),
    ("rules: [\n", "YAML error at line"),
])
def test_bad_rules_file_stops_the_start(tmp_path, text, says):
    f = tmp_path / "alerts.yaml"
    f.write_text(text)
    p = subprocess.run([str(KILN), "serve", "--model", f"m={tmp_path}", "--alerts", str(f)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 2
    assert f"kiln serve: --alerts: {f}: " in p.stderr and says in p.stderr


def test_deploy_rules_match_prometheus_and_load(setup, tmp_path):  # noqa: F811
    """deploy/kiln-serve-alerts.yml (kiln's format) and deploy/kiln-alerts.yml (Prometheus')
    name the same alerts with the same severities and durations, and kiln serve starts with it."""
    import yaml

    deploy = REPO / "deploy"
    ours = yaml.safe_load((deploy / "kiln-serve-alerts.yml").read_text())["rules"]
    prom = [r for g in yaml.safe_load((deploy / "kiln-alerts.yml").read_text())["groups"]
            for r in g["rules"]]
    assert {r["name"]: (r["severity"], r.get("for", "0")) for r in ours} == \
        {r["alert"]: (r["labels"]["severity"], r.get("for", "0")) for r in prom}
    _, _, _, model = setup
    s = Server("--alerts", deploy / "kiln-serve-alerts.yml", models=[f"m={model}"])
    assert s.stop() == 0
