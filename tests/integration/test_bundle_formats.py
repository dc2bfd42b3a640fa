"""The model bundle's formats, checked by the reference readers: the `safetensors` package reads
kiln's weights, kiln reads weights written by the `safetensors` package, `onnx.checker` accepts
kiln's ONNX export, and onnxruntime computes what kiln computes.

Two groups:
- bundles written here in Python (safetensors.numpy + kiln.json + MLmodel) → `kiln export-onnx`
  → onnxruntime against a float64 numpy forward pass. Needs only `kiln export-onnx`.
- `kiln train` on a small CSV → the bundle's files read by Python → `kiln export-onnx` and
  onnxruntime against `kiln predict`.

The kiln binary is $KILN_BIN (default: build/kiln in the repository).
"""

import csv
import json
import math
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from safetensors.numpy import load_file, save_file

from conftest import run_kiln as kiln

ACTIVATIONS = ["relu", "gelu", "tanh", "sigmoid"]
TOL = 1e-5


# --- reference model ---------------------------------------------------------------------------

_erf = np.vectorize(math.erf)


def act(name, z):
    if name == "relu":
        return np.maximum(z, 0)
    if name == "gelu":
        return 0.5 * z * (1 + _erf(z / math.sqrt(2)))
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-z))
    assert name == "identity"
    return z


def reference_forward(cfg, tensors, x):
    """The bundle's model in float64: transform, Linear layers (y = x W^T + b), softmax."""
    arch, pre = cfg["architecture"], cfg["preprocessing"]
    h = x.astype(np.float64)
    if pre["transform"] != "none":
        h = (h - np.array(pre["shift"], np.float32)) * np.array(pre["scale"], np.float32)
    n = len(arch["layers"]) - 1
    for i in range(1, n + 1):
        w = tensors[f"fc{i}.weight"].astype(np.float64)
        b = tensors[f"fc{i}.bias"].astype(np.float64)
        h = h @ w.T + b
        if i < n:
            h = act(arch["activation"], h)
    if arch["task"] == "classification":
        e = np.exp(h - h.max(axis=1, keepdims=True))
        h = e / e.sum(axis=1, keepdims=True)
    return h


def run_onnx(path, x):
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8
    assert model.producer_name == "kiln"
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [inp] = sess.get_inputs()
    [out] = sess.get_outputs()
    assert inp.name == "input"
    assert inp.shape[1] == x.shape[1]
    (y,) = sess.run(None, {"input": x.astype(np.float32)})
    return out.name, y


# --- bundles written in Python -----------------------------------------------------------------


def write_python_bundle(d, layers, activation, task, transform, seed):
    """A bundle as another tool would write it: safetensors.numpy (its own tensor order and
    padding), kiln.json and a minimal MLmodel."""
    rng = np.random.default_rng(seed)
    d.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for i in range(1, len(layers)):
        fan_in = layers[i - 1]
        tensors[f"fc{i}.weight"] = (rng.standard_normal((layers[i], fan_in)) / math.sqrt(fan_in)).astype(np.float32)
        tensors[f"fc{i}.bias"] = (0.1 * rng.standard_normal(layers[i])).astype(np.float32)
    save_file(tensors, str(d / "model.safetensors"), metadata={"format": "pt"})
    n_in, n_out = layers[0], layers[-1]
    affine = transform != "none"
    cfg = {
        "format_version": 1,
        "kiln_version": "python-test",
        "architecture": {"layers": layers, "activation": activation, "dropout": 0.0, "task": task},
        "preprocessing": {
            "transform": transform,
            "shift": rng.normal(size=n_in).astype(np.float32).tolist() if affine else None,
            "scale": (0.5 + rng.random(n_in)).astype(np.float32).tolist() if affine else None,
            "feature_names": [f"f{j}" for j in range(n_in)],
            "encoder": None,
        },
        "labels": [f"class{c}" for c in range(n_out)] if task == "classification" else [],
        "training_data_digest": "",
        "training": None,
    }
    (d / "kiln.json").write_text(json.dumps(cfg, indent=2))
    (d / "MLmodel").write_text(
        "artifact_path: model\n"
        "flavors:\n"
        "  kiln:\n"
        "    config: kiln.json\n"
        "    data: model.safetensors\n"
        "    format_version: 1\n"
    )
    return cfg, tensors


PY_CASES = [(a, "classification", "standard") for a in ACTIVATIONS] + [
    ("gelu", "regression", "none"),
    ("identity", "regression", "minmax"),
]


@pytest.mark.parametrize("activation,task,transform", PY_CASES)
def test_onnx_export_of_python_written_bundle(tmp_path, activation, task, transform):
    layers = [6, 16, 12, 3] if task == "classification" else [6, 9, 2]
    cfg, tensors = write_python_bundle(tmp_path / "model", layers, activation, task, transform, 7)
    onnx_path = tmp_path / "model.onnx"
    kiln("export-onnx", tmp_path / "model", "-o", onnx_path)
    x = np.random.default_rng(3).normal(size=(64, layers[0])).astype(np.float32) * 3
    name, y = run_onnx(onnx_path, x)
    assert name == ("probabilities" if task == "classification" else "predictions")
    ref = reference_forward(cfg, tensors, x)
    assert y.shape == ref.shape
    assert np.max(np.abs(y - ref)) <= TOL


def test_export_onnx_refuses_damaged_bundle(tmp_path):
    d = tmp_path / "model"
    write_python_bundle(d, [4, 5, 2], "relu", "classification", "standard", 1)
    tensors = load_file(str(d / "model.safetensors"))
    tensors["fc1.weight"] = tensors["fc1.weight"].T.copy()
    save_file(tensors, str(d / "model.safetensors"))
    p = kiln("export-onnx", d, "-o", tmp_path / "x.onnx", check=False)
    assert p.returncode == 1
    assert p.stderr.startswith(f'kiln export-onnx: load bundle "{d}": model.safetensors: ')
    assert 'tensor "fc1.weight": shape [4,5] expected [5,4]' in p.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_export_onnx_usage():
    assert kiln("export-onnx", "--help").stdout.startswith("usage: kiln export-onnx")
    assert kiln("export-onnx", check=False).returncode == 2
    assert kiln("export-onnx", "a", "b", check=False).returncode == 2


# --- bundles written by kiln train -------------------------------------------------------------

LABELS = ["red", "green", "blue"]


def write_dataset(path, task, rows=200, features=6, seed=5):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)) * rng.uniform(0.5, 20, size=features) + rng.uniform(-5, 5, size=features)
    x = np.round(x, 4).astype(np.float32)
    w = rng.normal(size=(features, 3))
    z = ((x - x.mean(0)) / x.std(0)) @ w
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow([f"f{j}" for j in range(features)] + ["label"])
        for i in range(rows):
            label = LABELS[int(np.argmax(z[i]))] if task == "classification" else f"{z[i, 0]:.5f}"
            out.writerow([f"{v:.4f}" for v in x[i]] + [label])
    return x


def train(tmp_path, activation, task):
    data = tmp_path / "data.csv"
    x = write_dataset(data, task)
    out_dim = 3 if task == "classification" else 1
    out = tmp_path / "model"
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(
        f"data: {{format: csv, train: {data}, label_column: label, val_fraction: 0.2, transform: standard}}\n"
        f"model: {{layers: 6-16-{out_dim}, activation: {activation}, dropout: 0.0, task: {task}}}\n"
        "optim: {name: adamw, lr: 0.01}\n"
        "train: {batch_size: 32, epochs: 3, seed: 1, threads: 1}\n"
        f"output: {out}\n"
    )
    kiln("train", "--config", cfg)
    return data, x, out


def read_safetensors_raw(path):
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    return n, header, raw[8 + n :]


def check_weights(bundle):
    """model.safetensors as the safetensors package and the raw bytes see it, against kiln.json."""
    cfg = json.loads((bundle / "kiln.json").read_text())
    layers = cfg["architecture"]["layers"]
    expected = {}
    for i in range(1, len(layers)):
        expected[f"fc{i}.weight"] = (layers[i], layers[i - 1])
        expected[f"fc{i}.bias"] = (layers[i],)
    tensors = load_file(str(bundle / "model.safetensors"))
    assert {k: v.shape for k, v in tensors.items()} == expected
    assert all(v.dtype == np.float32 for v in tensors.values())

    n, header, buf = read_safetensors_raw(bundle / "model.safetensors")
    assert n % 8 == 0, "header is padded to 8 bytes"
    meta = header.pop("__metadata__")
    assert meta["format"] == "pt"
    # Parameter order, contiguous, covering the whole buffer.
    order = [f"fc{i}.{k}" for i in range(1, len(layers)) for k in ("weight", "bias")]
    assert list(header) == order
    pos = 0
    for name in order:
        e = header[name]
        assert e["dtype"] == "F32"
        assert tuple(e["shape"]) == expected[name]
        begin, end = e["data_offsets"]
        assert begin == pos
        assert buf[begin:end] == np.ascontiguousarray(tensors[name], "<f4").tobytes()
        pos = end
    assert pos == len(buf)
    return cfg, tensors


def read_predictions(path, task):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], rows[1:]
    assert head[:2] == ["index", "prediction"]
    if task == "classification":
        probs = np.array([[float(v) for v in r[2:]] for r in body])
        return head, [r[1] for r in body], probs
    assert head == ["index", "prediction"]
    return head, None, np.array([[float(r[1])] for r in body])


@pytest.mark.parametrize(
    "activation,task", [(a, "classification") for a in ACTIVATIONS] + [("tanh", "regression")]
)
def test_trained_bundle_matches_readers(tmp_path, activation, task):
    data, x, bundle = train(tmp_path, activation, task)
    cfg, tensors = check_weights(bundle)
    mlmodel = (bundle / "MLmodel").read_text()
    assert "\n  kiln:\n" in mlmodel and "python_function" not in mlmodel
    labels = cfg["labels"]
    if task == "classification":
        assert sorted(labels) == sorted(LABELS)

    preds = tmp_path / "preds.csv"
    kiln("predict", "--model", bundle, "--input", data, "--output", preds)
    head, predicted, kiln_out = read_predictions(preds, task)
    if task == "classification":
        assert head == ["index", "prediction"] + [f"prob_{c}" for c in labels]
        assert predicted == [labels[i] for i in np.argmax(kiln_out, axis=1)]

    onnx_path = tmp_path / "model.onnx"
    kiln("export-onnx", bundle, "-o", onnx_path)
    name, y = run_onnx(onnx_path, x)
    assert name == ("probabilities" if task == "classification" else "predictions")
    assert y.shape == kiln_out.shape
    scale = np.maximum(1.0, np.abs(kiln_out)) if task == "regression" else 1.0
    assert np.max(np.abs(y - kiln_out) / scale) <= TOL
    ref = reference_forward(cfg, tensors, x)
    assert np.max(np.abs(ref - kiln_out) / scale) <= TOL
