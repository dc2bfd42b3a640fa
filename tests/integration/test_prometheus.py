"""A real Prometheus (Debian's `prometheus`) on loopback scrapes `kiln serve` and sees its
metrics; deploy/'s scrape config and alert rules are valid (promtool) and load into it."""

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request

import pytest
import yaml

from conftest import REPO, _free_port, small_bundle
from test_prediction_log import Server, rows_of

DEPLOY = REPO / "deploy"


def prometheus_or_skip():
    for tool in ("prometheus", "promtool"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (apt-get install prometheus)")


def test_deploy_files_are_valid():
    prometheus_or_skip()
    for args in (["check", "config", DEPLOY / "prometheus.yml"],
                 ["check", "rules", DEPLOY / "kiln-alerts.yml"]):
        p = subprocess.run(["promtool", *map(str, args)], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())["data"]["result"]


def test_prometheus_scrapes_kiln(tmp_path):
    prometheus_or_skip()
    bundle = small_bundle(tmp_path)
    server = Server(bundle)
    prom = None
    try:
        for i in range(5):
            server.infer(rows_of(bundle[2], i * 3, 3), f"p{i}")
        # deploy/'s config, pointed at this server and scraping every second.
        config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(DEPLOY / "kiln-alerts.yml")]
        config["scrape_configs"][0]["static_configs"] = [{"targets": [server.http]}]
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        port = _free_port()
        prom = subprocess.Popen(
            ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "prometheus.log", "w"))
        deadline = time.monotonic() + 90
        seen = None
        while time.monotonic() < deadline:
            assert prom.poll() is None, (tmp_path / "prometheus.log").read_text()[-3000:]
            try:
                up = query(port, 'up{job="kiln-serve"}')
                seen = query(port, 'sum(kiln_inference_requests_success_total{model="toy"})')
            except OSError:
                up = seen = None
            if up and up[0]["value"][1] == "1" and seen and float(seen[0]["value"][1]) >= 5:
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"Prometheus never saw kiln's metrics (last: {seen}):\n"
                                 + (tmp_path / "prometheus.log").read_text()[-3000:])
        rows = query(port, 'sum(kiln_inference_rows_total{model="toy"})')
        assert float(rows[0]["value"][1]) == 15
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=10) as r:
            groups = json.loads(r.read())["data"]["groups"]
        names = {rule["name"] for g in groups for rule in g["rules"]}
        assert {"KilnInferenceErrors", "KilnLiveAccuracyLow", "KilnNoModelLoaded"} <= names
    finally:
        if prom:
            prom.terminate()
            prom.wait(timeout=30)
        assert server.stop() == 0
