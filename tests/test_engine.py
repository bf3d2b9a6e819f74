"""Engine: selection by budget/name/latency, input checks, thread safety, and the no-torch rule."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import onnxruntime as ort
import pytest

from slimkit import runtime
from slimkit.runtime.backends import OnnxRuntimeBackend
from slimkit.runtime.engine import Engine
from slimkit.runtime.errors import BudgetError, BundleError, ConfigError, InputError, VariantError
from slimkit.runtime.manifest import read_manifest, update_latency


@pytest.fixture(scope="module")
def tiny_engine(tiny_bundle):
    return runtime.load(tiny_bundle, threads=1)


def _direct(bundle, name, x):
    sess = ort.InferenceSession(str(bundle / f"{name}.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": x})[0]


def _x(batch=2, seed=0):
    return np.random.default_rng(seed).standard_normal((batch, 16)).astype(np.float32)


def test_every_variant_matches_its_own_onnx_file(tiny_engine, tiny_bundle):
    x = _x(3)
    for name in ["w8", "w16", "w32"]:
        np.testing.assert_array_equal(tiny_engine.run(x, variant=name), _direct(tiny_bundle, name, x))
        assert tiny_engine.last == name
    np.testing.assert_array_equal(tiny_engine.run(x), _direct(tiny_bundle, "w32", x))  # none: largest
    assert tiny_engine.last == "w32"


def test_variants_describe_costs_and_metrics(tiny_engine):
    infos = tiny_engine.variants
    assert [v.name for v in infos] == ["w8", "w16", "w32"]
    assert [v.macs for v in infos] == [160, 320, 640]
    assert infos[0].metrics["accuracy"] == 0.08 and infos[0].config == {"hidden": 8}
    assert infos[0].metrics["onnx_bytes"] > infos[0].metrics["onnx_zlib_bytes"] > 0
    assert tiny_engine.latency_key == "onnxruntime/cpu"


@pytest.mark.parametrize("budget, name", [(1.0, "w32"), (1, "w32"), (0.99, "w16"), (0.5, "w16"),
                                          (0.49, "w8"), (0.25, "w8")])
def test_budget_serves_the_largest_variant_that_fits(tiny_engine, budget, name):
    tiny_engine.run(_x(), budget=budget)
    assert tiny_engine.last == name
    assert tiny_engine.select(budget=budget).name == name


@pytest.mark.parametrize("budget", [0, 1.5, -0.1, "a", True, [0.5], float("nan")])
def test_bad_budgets_raise_budget_error(tiny_engine, budget):
    tiny_engine.run(_x(), budget=1)  # cached 1 must not let True through
    with pytest.raises(BudgetError):
        tiny_engine.run(_x(), budget=budget)


def test_nothing_fits_unless_fallback(tiny_engine):
    with pytest.raises(BudgetError, match="fallback='smallest'"):
        tiny_engine.run(_x(), budget=0.1)
    tiny_engine.run(_x(), budget=0.1, fallback="smallest")
    assert tiny_engine.last == "w8"
    with pytest.raises(ConfigError, match="fallback"):
        tiny_engine.run(_x(), budget=0.1, fallback="largest")


def test_selector_errors(tiny_engine):
    with pytest.raises(VariantError, match=r"'nope'.*\['w8', 'w16', 'w32'\]"):
        tiny_engine.run(_x(), variant="nope")
    with pytest.raises(ConfigError, match="at most one"):
        tiny_engine.run(_x(), budget=0.5, variant="w8")
    with pytest.raises(ConfigError, match="not to variant"):
        tiny_engine.run(_x(), variant="w8", fallback="smallest")


@pytest.mark.parametrize("x, got", [
    (np.zeros((2, 16), np.float64), "float64 of shape (2, 16)"),
    (np.zeros((2, 40), np.float32), "float32 of shape (2, 40)"),
    (np.zeros((16,), np.float32), "float32 of shape (16,)"),
    (np.zeros((1, 2, 16), np.float32), "float32 of shape (1, 2, 16)"),
])
def test_wrong_input_names_expected_and_received(tiny_engine, x, got):
    with pytest.raises(InputError) as e:
        tiny_engine.run(x, budget=0.5)
    assert "expected float32 of shape [batch, 16]" in str(e.value) and got in str(e.value)


def test_last_is_per_thread(tiny_engine, tiny_bundle):
    names = ["w8", "w16", "w32"]
    xs = {n: _x(2, seed=i) for i, n in enumerate(names)}
    want = {n: _direct(tiny_bundle, n, xs[n]) for n in names}

    def worker(i):
        bad = 0
        for k in range(200):
            n = names[(i + k) % 3]
            y = tiny_engine.run(xs[n], variant=n) if k % 2 else tiny_engine.run(
                xs[n], budget={"w8": 0.25, "w16": 0.5, "w32": 1.0}[n])
            bad += tiny_engine.last != n or not np.array_equal(y, want[n])
        return bad

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(worker, range(8))) == [0] * 8


def test_run_with_info(tiny_engine):
    y, info = tiny_engine.run_with_info(_x(), budget=0.5)
    assert y.shape == (2, 4) and info.name == "w16" and info.macs == 320


def test_latency_selection_uses_the_manifest(tiny_bundle, tmp_path):
    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    update_latency(b, "onnxruntime/cpu", {"w8": {1: {"p50_ms": 0.1, "p95_ms": 0.2}},
                                          "w16": {1: {"p50_ms": 0.2, "p95_ms": 0.3}},
                                          "w32": {1: {"p50_ms": 0.4, "p95_ms": 0.5}}})
    eng = runtime.load(b)
    assert eng.select(latency_ms=0.25).name == "w16"
    assert eng.select(latency_ms=10).name == "w32"
    eng.run(_x(), latency_ms=0.1)
    assert eng.last == "w8"
    with pytest.raises(BudgetError, match=r"fastest \(w8\) has p50 0.1 ms"):
        eng.run(_x(), latency_ms=0.05)
    assert eng.select(latency_ms=0.05, fallback="smallest").name == "w8"
    for bad in (0, -1, "1ms", True):
        with pytest.raises(BudgetError, match="latency_ms"):
            eng.run(_x(), latency_ms=bad)


def test_latency_is_measured_once_when_missing_and_can_be_saved(tiny_bundle, tmp_path):
    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    eng = runtime.load(b, threads=1)
    assert all(v.latency == {} for v in eng.variants)
    assert eng.select(latency_ms=1e6).name == "w32"  # measures every variant at batch 1
    rec = eng.variants[0].latency["onnxruntime/cpu"]
    assert set(rec["batch"]["1"]) == {"p50_ms", "p95_ms", "repeats"} and rec["batch"]["1"]["p50_ms"] > 0
    with pytest.raises(BudgetError):
        eng.run(_x(), latency_ms=1e-9)
    eng.measure_latency(batches=(1, 4), repeats=5, warmup=1, save=True)
    saved = read_manifest(b).variant("w16").latency["onnxruntime/cpu"]
    assert set(saved["batch"]) == {"1", "4"} and saved["threads"] == 1
    assert runtime.load(b).variants[1].latency["onnxruntime/cpu"]["batch"]["4"]["repeats"] == 5


def test_load_refuses_a_tampered_bundle(tiny_bundle, tmp_path):
    b = shutil.copytree(tiny_bundle, tmp_path / "b")
    f = b / "w16.onnx"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="w16.onnx"):
        runtime.load(b)


def test_backend_arguments(tiny_bundle):
    with pytest.raises(ConfigError, match="unknown backend"):
        runtime.load(tiny_bundle, backend="tensorflow")
    missing = next((p for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")
                    if p not in ort.get_available_providers()), None)
    if missing:
        with pytest.raises(ConfigError, match="not available"):
            runtime.load(tiny_bundle, providers=[missing, "CPUExecutionProvider"])
    with pytest.raises(ConfigError, match="threads"):
        runtime.load(tiny_bundle, threads=0)


def test_backend_fast_call_matches_public_run(tiny_bundle):
    be = OnnxRuntimeBackend(tiny_bundle / "w16.onnx", threads=1)
    fn, outs, key = be.feed_call
    x = _x(5)
    np.testing.assert_array_equal(fn(outs, {key: x}, None)[0], be.session.run(None, {"input": x})[0])
    np.testing.assert_array_equal(be.run(x)[0], be.session.run(None, {"input": x})[0])
    assert be.device == "cpu" and be.session.get_providers()[0] == "CPUExecutionProvider"


class _PlainBackend:
    """A backend without ``feed_call`` that does not check inputs (as a future TensorRT one might)."""

    name, file_kind, checks_inputs = "plain", "onnx", False

    def __init__(self, path):
        self.inner = OnnxRuntimeBackend(path, threads=1)
        self.device = "cpu"
        self.calls = 0

    def run(self, x):
        self.calls += 1
        return self.inner.run(x)


def test_engine_checks_inputs_for_backends_that_do_not(tiny_bundle):
    m = read_manifest(tiny_bundle)
    backends = [_PlainBackend(tiny_bundle / v.files["onnx"].path) for v in m.variants]
    eng = Engine(m, backends)
    assert eng.latency_key == "plain/cpu"
    np.testing.assert_array_equal(eng.run(_x(), variant="w8"), _direct(tiny_bundle, "w8", _x()))
    with pytest.raises(InputError, match="expected float32 of shape"):
        eng.run(np.zeros((2, 16)), variant="w8")
    assert backends[0].calls == 1  # refused before reaching the backend


@pytest.mark.parametrize("module", ["slimkit.runtime", "slimkit.runtime.engine", "slimkit.runtime.backends",
                                    "slimkit.runtime.manifest", "slimkit.export"])
def test_import_does_not_load_torch(module):
    code = f"import sys, {module}; assert 'torch' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_export_verbs_load_lazily():
    code = ("import sys; from slimkit import export; assert 'torch' not in sys.modules; "
            "assert sorted(export.__all__) == ['add_engines', 'bundle', 'latency_cost', 'quantize_onnx', 'to_onnx', 'to_tensorrt', 'to_triton']; "
            "import slimkit.export.bundler; assert callable(export.bundle); export.to_onnx; "
            "assert 'torch' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
