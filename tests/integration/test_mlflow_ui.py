"""What a data scientist sees: headless Chromium opens the MLflow UI's page of a run kiln
trained and the page of the model it registered; the rendered pages must show the run's metric
and the model version. Screenshots are kept in $KILN_SCREENSHOT_DIR (default: the test's temporary
directory, printed)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO, fmnist_or_skip, mlflow_or_skip, run_kiln


def chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no Chromium installed (apt-get install chromium)")


def render(url, screenshot=None):
    """The page's DOM after its scripts ran (and a screenshot), from headless Chromium."""
    base = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--hide-scrollbars", "--window-size=1400,1000", "--virtual-time-budget=20000"]
    if screenshot:
        subprocess.run(base + [f"--screenshot={screenshot}", url], capture_output=True,
                       timeout=120, check=True)
    p = subprocess.run(base + ["--dump-dom", url], capture_output=True, text=True, timeout=120,
                       check=True)
    return p.stdout


def test_run_and_model_pages_show_kilns_results(mlflow_server, tmp_path):
    d = fmnist_or_skip()
    mlflow = mlflow_or_skip()
    shots = Path(os.environ.get("KILN_SCREENSHOT_DIR", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    out = tmp_path / "model"
    env = mlflow_server.client_env(KILN_SPOOL_DIR=tmp_path / "spool")
    run_kiln("train", "--config", REPO / "configs" / "fashion_mnist.yaml",
             "--set", f"data.train={d}/train-images-idx3-ubyte.gz",
             "--set", f"data.train_labels={d}/train-labels-idx1-ubyte.gz",
             "--set", f"data.test={d}/t10k-images-idx3-ubyte.gz",
             "--set", f"data.test_labels={d}/t10k-labels-idx1-ubyte.gz",
             "--set", "data.limit=3000", "--set", "model.layers=784-64-10",
             "--set", "train.epochs=1", "--set", "train.patience=0",
             "--set", "tracking.experiment=ui-check", "--set", "tracking.run_name=ui-check-run",
             "--set", f"output={out}", "--register", "kiln-ui-model", env=env)
    c = mlflow.MlflowClient(mlflow_server.uri)
    exp = c.get_experiment_by_name("ui-check")
    run = c.search_runs([exp.experiment_id])[0]
    acc = json.loads((out / "kiln.json").read_text())["training"]["metrics"]["test_accuracy"]

    run_url = f"{mlflow_server.uri}/#/experiments/{exp.experiment_id}/runs/{run.info.run_id}"
    dom = render(run_url, shots / "mlflow-run.png")
    print(f"screenshots in {shots}")
    assert "ui-check-run" in dom
    assert "test/accuracy" in dom
    assert f"{acc:.4f}".rstrip("0") in dom, f"test accuracy {acc} not shown on the run page"
    assert "kiln-ui-model" in dom  # the run page lists the model it registered

    dom = render(f"{mlflow_server.uri}/#/models/kiln-ui-model", shots / "mlflow-model.png")
    assert "Version 1" in dom
    assert (shots / "mlflow-run.png").stat().st_size > 10000
