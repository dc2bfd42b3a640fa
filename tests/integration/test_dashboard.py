"""The monitoring dashboard of `kiln serve --http-port` (GET /dashboard) and GET /alerts.

The page is served as embedded (byte for byte serving/dashboard.html), with the right headers,
and is self-contained: nothing it names points to another host. Headless Chromium runs its
script against a real server: before traffic the model's version card reads no requests; after
REQUESTS inference requests it reads exactly that many and a latency percentile. A second page
load runs against a stand-in server whose /metrics and /alerts this test writes, to check what a
real server cannot produce on demand: escaped label values, failures, drift colours, an alert on
the panel and on its version's card, and the banner (with the last numbers kept) once /metrics
starts failing. The parser and histogram_quantile arithmetic are also checked under node, without
a browser. Screenshots are kept in $KILN_SCREENSHOT_DIR (default: the test's temporary folder).
"""

import http.client
import http.server
import json
import os
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest

from conftest import FEATURES, REPO, small_bundle
from test_http import HttpServer
from test_mlflow_ui import chromium
from test_drift_serving import setup  # noqa: F401  (a fixture: a bundle, held-out and shifted rows)

MODEL = "iris"
REQUESTS = 50
PAGE = REPO / "serving" / "dashboard.html"


# --- helpers ------------------------------------------------------------------------------------

class HttpServe(HttpServer):
    """`kiln serve --http-port 0` (test_http's), with its base URL."""

    def __init__(self, *models):
        super().__init__(*models)
        self.base = f"http://{self.host}:{self.port}"


def render(url, screenshot=None, budget_ms=4000):
    """The DOM after the page's script ran for budget_ms of virtual time (and a screenshot)."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--window-size=1400,1300", f"--virtual-time-budget={budget_ms}"]
    if screenshot:
        subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120, check=True)
    p = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120,
                       check=True)
    return p.stdout


def shots_dir(tmp_path):
    d = Path(os.environ.get("KILN_SCREENSHOT_DIR", tmp_path))
    d.mkdir(parents=True, exist_ok=True)
    return d


class Dom(HTMLParser):
    """What the tests read from a dumped DOM: body attributes, each card's data-metric values
    (data-value and text), the alert rows, the banner and the visible text."""

    def __init__(self, html):
        super().__init__()
        self.body, self.cards, self.alert_rules, self.text = {}, {}, [], []
        self.banner_hidden, self.banner = True, ""
        self._stack = []  # (tag, card key or None, metric name or None, is banner)
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        card = self._stack[-1][1] if self._stack else None
        if tag == "body":
            self.body = a
        if tag == "article" and "data-model" in a:
            card = (a["data-model"], a["data-version"])
            self.cards[card] = {"_class": a.get("class", "")}
        if tag == "tr" and "data-rule" in a:
            self.alert_rules.append(a["data-rule"])
        metric = a.get("data-metric")
        if metric and card:
            self.cards[card][metric] = [a.get("data-value"), ""]
        banner = a.get("id") == "banner"
        if banner:
            self.banner_hidden = "hidden" in a
        if tag not in ("br", "meta", "input", "img", "link"):
            self._stack.append((tag, card, metric, banner or (self._stack and self._stack[-1][3])))

    def handle_endtag(self, tag):
        while self._stack:
            if self._stack.pop()[0] == tag:
                break

    def handle_data(self, data):
        if not self._stack:
            return
        tag, card, metric, banner = self._stack[-1]
        if tag in ("script", "style"):
            return
        self.text.append(data)
        if metric and card:
            self.cards[card][metric][1] += data
        if banner:
            self.banner += data

    def card(self, model, version):
        assert (model, version) in self.cards, f"no card for {model} v{version}: {list(self.cards)}"
        return self.cards[(model, version)]

    def visible_text(self):
        return " ".join(self.text)


def number(card, metric):
    """A card's number (from data-value), or None when it shows as absent."""
    raw, text = card[metric]
    if raw in (None, ""):
        assert text.strip() == "\u2014", f"{metric}: no value but shows {text!r}"
        return None
    return float(raw)


# --- a real server --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    _, _, x, model = small_bundle(tmp_path_factory.mktemp("dashboard"))
    s = HttpServe(f"{MODEL}={model}")
    s.rows = x
    yield s
    assert s.stop() == 0


def test_page_is_embedded_and_self_contained(server):
    status, headers, body = server.request("GET", "/dashboard")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert headers["cache-control"] == "no-store"
    assert "connect-src 'self'" in headers["content-security-policy"]
    assert body == PAGE.read_bytes(), "the binary serves a stale copy of serving/dashboard.html"
    page = body.decode()
    # Nothing that loads from elsewhere: no src/href/url()/@import/fetch to a scheme or a host.
    for m in re.finditer(r"""(?:\bsrc|\bhref|\baction)\s*=\s*["']?([^"'\s>]*)""", page, re.I):
        assert not re.match(r"(?:[a-z][a-z0-9+.-]*:)?//", m.group(1), re.I), m.group(0)
        assert not re.match(r"(?:https?|ftp|ws|wss):", m.group(1), re.I), m.group(0)
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", page, re.I)
    assert "@import" not in page
    fetched = re.findall(r"""\bfetch\w*\(\s*["'`]([^"'`]*)""", page)
    assert {"/metrics", "/alerts"} <= set(fetched)
    for path in fetched:
        assert path.startswith("/") and not path.startswith("//"), path
    assert "<link" not in page.lower() and "<iframe" not in page.lower()

    status, headers, _ = server.request("HEAD", "/dashboard")
    assert status == 200 and headers["content-type"].startswith("text/html")
    for method in ("POST", "PUT", "DELETE"):
        status, headers, body = server.request(method, "/dashboard", body=b"{}")
        assert status == 405, method
        assert headers["allow"] == "GET, HEAD"
        assert json.loads(body)["error"] == "method not allowed"


def test_alerts_without_rules_is_404(server):
    status, headers, body = server.request("GET", "/alerts")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"error": "no alert rules configured (kiln serve --alerts FILE)"}
    status, headers, _ = server.request("POST", "/alerts", body=b"{}")
    assert status == 405 and headers["allow"] == "GET, HEAD"


def test_chromium_shows_the_served_version_and_its_traffic(server, tmp_path):
    url = f"{server.base}/dashboard?refresh=0.5"
    dom = Dom(render(url))
    assert int(dom.body.get("data-updates", "0")) >= 2, "the page did not refresh itself"
    card = dom.card(MODEL, "1")
    assert number(card, "requests_total") in (None, 0.0)
    assert "no alert rules configured" in dom.visible_text()

    for i in range(REQUESTS):
        row = [float(v) for v in server.rows[i % len(server.rows)]]
        body = json.dumps({"inputs": [{"name": "input", "shape": [1, FEATURES],
                                       "datatype": "FP32", "data": row}]})
        status, _, answer = server.request("POST", f"/v2/models/{MODEL}/infer", body=body,
                                           headers={"Content-Type": "application/json"})
        assert status == 200, answer

    shot = shots_dir(tmp_path) / "dashboard.png"
    dom = Dom(render(url, screenshot=shot))
    print(f"screenshot: {shot}")
    card = dom.card(MODEL, "1")
    assert number(card, "requests_total") == REQUESTS
    assert number(card, "errors_total") == 0
    p50, p99 = number(card, "p50_ms"), number(card, "p99_ms")
    assert p50 is not None and 0 < p50 <= p99
    assert number(card, "batch_mean") >= 1
    assert number(card, "share") == 1.0
    text = dom.visible_text()
    assert "NaN" not in text and "undefined" not in text
    assert dom.banner_hidden, dom.banner
    assert shot.exists() and shot.stat().st_size > 10_000


# --- a stand-in server whose answers the test writes ----------------------------------------------

WEIRD = 'we"ird\\mo\ndel'  # a model name that needs every label escape


def esc(v):
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def fake_metrics(poll):
    """kiln's /metrics shape for two versions of "fraud" (v2 drifting and failing) and one of
    WEIRD; requests grow by 10 per poll so a rate shows."""
    w = esc(WEIRD)
    lines = [
        "# HELP kiln_model_versions_loaded Versions of the model ready to answer",
        "# TYPE kiln_model_versions_loaded gauge",
        'kiln_model_versions_loaded{model="fraud"} 2',
        f'kiln_model_versions_loaded{{model="{w}"}} 1',
        "# TYPE kiln_prediction_log_records_total counter",
        'kiln_prediction_log_records_total{model="fraud"} 1234',
        'kiln_prediction_log_dropped_total{model="fraud"} 0',
        'kiln_traffic_requests_total{model="fraud",route="champion"} 900',
        'kiln_traffic_requests_total{model="fraud",route="challenger"} 100',
        "# TYPE kiln_inference_requests_success_total counter",
        f'kiln_inference_requests_success_total{{model="fraud",version="1"}} {900 + 10 * poll}',
        'kiln_inference_requests_success_total{model="fraud",version="2"} 96',
        'kiln_inference_requests_failure_total{model="fraud",version="2",reason="deadline"} 3',
        'kiln_inference_requests_failure_total{model="fraud",version="2",reason="queue_full"} 1',
        f'kiln_inference_requests_success_total{{model="{w}",version="7"}} 5 1700000000000',
        "# TYPE kiln_inference_request_duration_seconds histogram",
    ]
    for version, counts in (("1", (50, 100, 100)), ("2", (0, 90, 100))):
        for le, n in zip(("0.01", "0.02", "+Inf"), counts):
            lines.append(f'kiln_inference_request_duration_seconds_bucket{{model="fraud",'
                         f'version="{version}",le="{le}"}} {n}')
        lines.append(f'kiln_inference_request_duration_seconds_count{{model="fraud",'
                     f'version="{version}"}} 100')
        lines.append(f'kiln_inference_request_duration_seconds_sum{{model="fraud",'
                     f'version="{version}"}} 1.5')
    lines += [
        'kiln_inference_batch_size_rows_bucket{model="fraud",version="1",le="4"} 10',
        'kiln_inference_batch_size_rows_bucket{model="fraud",version="1",le="8"} 20',
        'kiln_inference_batch_size_rows_bucket{model="fraud",version="1",le="+Inf"} 20',
        'kiln_inference_batch_size_rows_sum{model="fraud",version="1"} 100',
        'kiln_inference_batch_size_rows_count{model="fraud",version="1"} 20',
        'kiln_traffic_share_ratio{model="fraud",version="1"} 0.9',
        'kiln_traffic_share_ratio{model="fraud",version="2"} 0.1',
        'kiln_queue_requests{model="fraud",version="1"} 3',
        'kiln_queue_requests{model="fraud",version="2"} 0',
        'kiln_drift_psi_max{model="fraud",version="2"} 0.41',
        'kiln_drift_ks_max{model="fraud",version="2"} 0.3',
        'kiln_drift_prediction_psi{model="fraud",version="2"} 0.12',
        'kiln_drift_window_rows{model="fraud",version="2"} 1000',
        'kiln_drift_psi{model="fraud",version="2",feature="amount"} 0.41',
        'kiln_drift_psi{model="fraud",version="2",feature="hour"} 0.15',
        'kiln_drift_psi{model="fraud",version="2",feature="country"} 0.02',
        'kiln_live_accuracy{model="fraud",version="2",window="500"} 0.8',
        'kiln_live_accuracy{model="fraud",version="2",window="all"} 0.875',
        'kiln_feedback_rows_total{model="fraud",version="2"} 640',
        "# a comment line, ignored",
        "this line is not a sample {",
        "",
    ]
    return "\n".join(lines)


ALERTS = {"alerts": [
    {"rule": "InputDrift", "severity": "critical", "state": "firing",
     "labels": {"model": "fraud", "version": "2"}, "value": 0.41, "comparison": ">",
     "threshold": 0.25, "active_since": "2026-11-28T21:40:00Z", "summary": "input drift on fraud"},
    {"rule": "SlowRequests", "severity": "warning", "state": "pending",
     "labels": {"model": "fraud", "version": "1"}, "value": 0.02, "comparison": ">",
     "threshold": 0.01, "active_since": "2026-11-28T21:45:00Z", "summary": "p99 over 10 ms"},
]}
GOOD_POLLS = 3  # /metrics answers this many times, then 503


@pytest.fixture
def stand_in():
    """A loopback HTTP server answering /dashboard from serving/dashboard.html, /metrics from
    fake_metrics (GOOD_POLLS times, then 503), /alerts with ALERTS and /v2 like kiln; yields
    its URL and the poll counter (reset it to start the good polls again)."""
    polls = {"metrics": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, ctype, body):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path == "/dashboard":
                self.answer(200, "text/html; charset=utf-8", PAGE.read_bytes())
            elif path == "/metrics":
                polls["metrics"] += 1
                if polls["metrics"] > GOOD_POLLS:
                    self.answer(503, "application/json", b'{"error":"stopping"}')
                else:
                    self.answer(200, "text/plain; version=0.0.4",
                                fake_metrics(polls["metrics"]).encode())
            elif path == "/alerts":
                self.answer(200, "application/json", json.dumps(ALERTS).encode())
            elif path == "/v2":
                self.answer(200, "application/json", b'{"name":"kiln","version":"test"}')
            else:
                self.answer(404, "application/json", b'{"error":"unknown route"}')

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", polls
    httpd.shutdown()
    httpd.server_close()


def test_chromium_shows_alerts_drift_escapes_and_a_failed_fetch(stand_in, tmp_path):
    url, polls = stand_in
    html = render(f"{url}/dashboard?refresh=0.5", budget_ms=5000)
    dom = Dom(html)
    # Three good polls, then /metrics fails: the banner says so and the last numbers stay.
    assert dom.body.get("data-updates") == str(GOOD_POLLS)
    assert not dom.banner_hidden and "/metrics answered 503" in dom.banner
    v1, v2 = dom.card("fraud", "1"), dom.card("fraud", "2")
    weird = dom.card(WEIRD, "7")  # \\, \" and \n unescaped into the attribute
    assert number(weird, "requests_total") == 5

    assert number(v1, "requests_total") == 900 + 10 * GOOD_POLLS
    assert number(v1, "request_rate") > 0
    assert number(v1, "queue") == 3
    assert number(v1, "share") == pytest.approx(0.9)
    assert number(v1, "batch_mean") == pytest.approx(5.0)
    assert number(v1, "batch_p50") == pytest.approx(4.0)  # rank 10 ends the first bucket
    # histogram_quantile: 50 of 100 at or under 10 ms, the other 50 in (10, 20] ms.
    assert number(v1, "p50_ms") == pytest.approx(10.0)
    assert number(v1, "p99_ms") == pytest.approx(10 + 10 * 49 / 50)
    assert "since start" in v1["latency_scope"][1]  # the buckets did not move between polls
    assert number(v1, "errors_total") == 0
    assert number(v1, "drift_psi_max") is None and number(v1, "live_accuracy_all") is None

    assert number(v2, "requests_total") == 100
    assert number(v2, "errors_total") == 4
    assert number(v2, "error_ratio") == pytest.approx(0.04)
    assert number(v2, "p90_ms") == pytest.approx(20.0)  # rank 90 closes the second bucket
    assert number(v2, "drift_psi_max") == pytest.approx(0.41)
    assert number(v2, "live_accuracy_all") == pytest.approx(0.875)
    assert number(v2, "live_accuracy_window") == pytest.approx(0.8)
    assert number(v2, "feedback_rows") == 640
    assert "alerting" in v2["_class"] and "alerting" not in v1["_class"]

    assert sorted(dom.alert_rules) == ["InputDrift", "SlowRequests"]
    # Per-feature PSI bars, coloured by the usual thresholds.
    # amount's 0.41 on a scale to 0.5, with marks at 0.1 and 0.25
    assert re.search(r'class="fill-bad" style="width: ?82(\.0)?%;?"', html)
    assert re.search(r'<b style="left: ?20(\.0)?%;?"></b><b style="left: ?50(\.0)?%;?"></b>', html)
    for feature, cls in (("amount", "bad"), ("hour", "warn"), ("country", "ok")):
        assert re.search(rf'class="num {cls}" data-metric="drift_psi" data-feature="{feature}"',
                         html), feature
    # The alert shows on its version's card too.
    card_html = html.split('data-version="2"', 1)[1].split("</article>", 1)[0]
    assert "InputDrift" in card_html and "input drift on fraud" in card_html

    text = dom.visible_text()
    assert "NaN" not in text and "undefined" not in text
    polls["metrics"] = 0  # a picture of the good polls, before /metrics fails again
    shot = shots_dir(tmp_path) / "dashboard-alerts.png"
    render(f"{url}/dashboard?refresh=0.5", screenshot=shot, budget_ms=1200)
    print(f"screenshot: {shot}")
    assert shot.stat().st_size > 10_000


# --- the parser and the arithmetic, under node ----------------------------------------------------

NODE_CHECK = r"""
const fs = require("fs");
const page = fs.readFileSync(process.argv[2], "utf8");
const js = page.split("<script>")[1].split("</script>")[0];
const mod = { exports: {} };
new Function("module", js)(mod);
const d = mod.exports;
const text = [
  '# HELP x_total A help with \\\\ and \\n escapes',
  '# TYPE x_total counter',
  'x_total{a="q\\"u",b="back\\\\slash",c="new\\nline"} 12 1700000000000',
  'x_total{ a = "spaced" , } 1e3',
  'y +Inf', 'z -Inf', 'n NaN', 'bare 0.5', 'broken{a="open} 1', 'noval{a="1"}', '',
].join("\n");
const p = d.parsePrometheus(text);
const H = (le, count) => ({ le, count });
const hist = [H(0.1, 2), H(0.2, 6), H(0.4, 8), H(Infinity, 10)];
const out = {
  help: p.help.x_total, type: p.type.x_total,
  samples: p.samples.map((s) => [s.name, s.labels, String(s.value)]),
  q50: d.histogramQuantile(0.5, hist),
  q90: d.histogramQuantile(0.9, hist),
  q0: d.histogramQuantile(0, hist),
  qEmpty: String(d.histogramQuantile(0.5, [H(0.1, 0), H(Infinity, 0)])),
  qNoInf: String(d.histogramQuantile(0.5, [H(0.1, 1), H(0.2, 2)])),
  qUnsorted: d.histogramQuantile(0.5, [H(Infinity, 10), H(0.4, 8), H(0.1, 2), H(0.2, 6)]),
  win: d.windowed({ buckets: [H(0.1, 5), H(Infinity, 12)], count: 12, sum: 3 },
                  { buckets: [H(0.1, 1), H(Infinity, 2)], count: 2, sum: 1 }),
  still: d.windowed({ buckets: [H(0.1, 1), H(Infinity, 2)], count: 2, sum: 1 },
                    { buckets: [H(0.1, 1), H(Infinity, 2)], count: 2, sum: 1 }).scope,
  fmt: [d.fmtNum(undefined), d.fmtNum(NaN), d.fmtNum(0.0123), d.fmtNum(12.34)],
};
console.log(JSON.stringify(out));
"""


def test_parser_and_quantiles_under_node(tmp_path):
    node = shutil.which("node") or shutil.which("nodejs")
    if not node:
        pytest.skip("no node installed (apt-get install nodejs)")
    script = tmp_path / "check.js"
    script.write_text(NODE_CHECK)
    p = subprocess.run([node, str(script), str(PAGE)], capture_output=True, text=True,
                       timeout=60, check=True)
    out = json.loads(p.stdout)
    assert out["help"] == "A help with \\ and \n escapes" and out["type"] == "counter"
    assert out["samples"] == [
        ["x_total", {"a": 'q"u', "b": "back\\slash", "c": "new\nline"}, "12"],
        ["x_total", {"a": "spaced"}, "1000"],
        ["y", {}, "Infinity"], ["z", {}, "-Infinity"], ["n", {}, "NaN"], ["bare", {}, "0.5"],
    ]  # the unterminated label and the line without a value are skipped
    assert out["q50"] == pytest.approx(0.175)  # rank 5 of 10: 3 of the 4 into (0.1, 0.2]
    assert out["q90"] == pytest.approx(0.4)  # rank 9 is in +Inf: the largest finite bound
    assert out["q0"] == pytest.approx(0.0)
    assert out["qEmpty"] == "NaN" and out["qNoInf"] == "NaN"
    assert out["qUnsorted"] == pytest.approx(0.175)
    assert out["win"]["scope"] == "interval" and out["win"]["count"] == 10
    assert out["win"]["buckets"] == [{"le": 0.1, "count": 4}, {"le": None, "count": 10}]
    assert out["still"] == "start"
    assert out["fmt"] == ["\u2014", "\u2014", "0.012", "12.3"]


# --- drift and alerts from a real server ----------------------------------------------------------

def test_chromium_shows_real_drift_and_a_firing_alert(setup, tmp_path):  # noqa: F811
    """kiln serve with a drift window and an alert rule on it: after shifted rows, the version's
    card shows the drift (its PSI bars red for the shifted features), the alert panel lists the
    firing rule, and the card is marked as alerting: the page against the real thing."""
    import time

    from test_drift_serving import SHIFT, Server, value

    _, _, shifted, model = setup
    rules = tmp_path / "alerts.yaml"
    rules.write_text("interval: 100ms\nrules:\n"
                     "  - {name: InputDrift, metric: kiln_drift_psi_max, comparison: '>',"
                     " threshold: 0.25, severity: critical, summary: 'drift on {model}'}\n")
    s = Server("--drift-window", "400", "--drift-interval", "0.1", "--alerts", rules,
               models=[f"m={model}"])
    try:
        s.send("m", shifted)
        end = time.time() + 30
        while time.time() < end and not value(s.metrics(), "kiln_alerts_firing", rule="InputDrift"):
            time.sleep(0.1)
        shot = shots_dir(tmp_path) / "dashboard-drift.png"
        url = f"http://{s.http}/dashboard?refresh=0.5"
        render(url, screenshot=shot, budget_ms=2000)
        html = render(url, budget_ms=2000)
    finally:
        assert s.stop() == 0
    dom = Dom(html)
    card = dom.card("m", "1")
    assert number(card, "drift_psi_max") > 0.25
    assert dom.alert_rules == ["InputDrift"]
    assert "alerting" in card["_class"]
    for j in SHIFT:  # the shifted features' bars are red
        assert re.search(rf'class="num bad" data-metric="drift_psi" data-feature="f{j}"', html), j
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")

