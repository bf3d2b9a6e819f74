"""The torch backend: ``torch.export`` programs in the bundle, run on CPU here (CUDA tests skip)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from slimkit import compress, export, runtime
from slimkit.runtime.errors import BundleError, ConfigError, InputError

BUDGETS = (0.25, 0.5, 0.51, 0.75, 1.0)


@pytest.fixture(scope="module")
def pt2_bundle(tmp_path_factory, tiny_mlp_family):
    path = tmp_path_factory.mktemp("pt2") / "bundle"
    export.bundle(tiny_mlp_family, tiny_mlp_family.example_input, path, torch_export=True)
    return path


def test_parity_and_selection_match_onnxruntime(pt2_bundle):
    ort_eng, pt_eng = runtime.load(pt2_bundle), runtime.load(pt2_bundle, backend="torch", threads=1)
    assert pt_eng.latency_key == "torch/cpu" and pt_eng.names == ort_eng.names
    rng = np.random.default_rng(0)
    for batch in (1, 5):
        x = rng.standard_normal((batch, 16)).astype(np.float32)
        for budget in BUDGETS:
            np.testing.assert_allclose(pt_eng.run(x, budget=budget), ort_eng.run(x, budget=budget),
                                       rtol=1e-4, atol=1e-5)
            assert pt_eng.last == ort_eng.last
    for budget in BUDGETS:
        assert pt_eng.select(budget=budget).name == ort_eng.select(budget=budget).name
    with pytest.raises(runtime.BudgetError):
        pt_eng.run(x, budget=0.1)


def test_conv_model_round_trips(tmp_path):
    """A residual 1-D CNN (conv, batch norm, residual adds) as a ``torch.export`` program."""
    from slimkit.compress.family import Family, Variant

    torch.manual_seed(0)
    model = compress.zoo.build("rescnn").eval()
    x = torch.randn(1, 1, 40)
    fam = Family([Variant.measure("full", model, x)], method="test", example_input=x, source={})
    export.bundle(fam, x, tmp_path / "b", torch_export=True)
    xs = torch.randn(3, 1, 40)
    got = runtime.load(tmp_path / "b", backend="torch").run(xs.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got, model(xs).numpy(), rtol=1e-4, atol=1e-5)


def test_a_fixed_batch_dim_exports_the_example_batch(tmp_path):
    """``dynamic_dims={0: None}`` fixes the batch axis: the program must take the example's batch of 1,
    like its ONNX twin (it used to be traced, and fixed, at batch 2)."""
    from slimkit.compress.family import Family, Variant

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    x = torch.randn(1, 4)
    fam = Family([Variant.measure("only", model, x)], method="test", example_input=x, source={})
    export.bundle(fam, x, tmp_path / "b", torch_export=True, dynamic_dims={0: None})
    got = runtime.load(tmp_path / "b", backend="torch").run(x.numpy())
    with torch.no_grad():
        np.testing.assert_allclose(got, model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_bad_inputs_and_options(pt2_bundle, tiny_bundle):
    eng = runtime.load(pt2_bundle, backend="torch")
    with pytest.raises(InputError, match="float32"):
        eng.run(np.zeros((1, 16), np.float64))
    with pytest.raises(InputError):
        eng.run(np.zeros((1, 15), np.float32))
    with pytest.raises(ConfigError, match="providers"):
        runtime.load(pt2_bundle, backend="torch", providers=["CPUExecutionProvider"])
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            runtime.backends.get_backend("torch")(pt2_bundle / "w8.pt2", device="cuda")
    with pytest.raises(ConfigError, match="cuda_graphs=True needs device='cuda'"):
        runtime.backends.get_backend("torch")(pt2_bundle / "w8.pt2", device="cpu", cuda_graphs=True)
    with pytest.raises(BundleError, match="no 'torch_export' file"):
        runtime.load(tiny_bundle, backend="torch")
    with pytest.raises(ConfigError, match="unknown backend 'tflite'.*tensorrt.*torch"):
        runtime.load(tiny_bundle, backend="tflite")


def test_runtime_still_imports_without_torch(tiny_bundle):
    code = ("import sys, numpy as np; from slimkit import runtime; "
            f"e = runtime.load({str(tiny_bundle)!r}); e.run(np.zeros((1, 16), np.float32), budget=0.5); "
            "runtime.backends.get_backend('onnxruntime'); assert 'torch' not in sys.modules, 'torch loaded'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")
@pytest.mark.parametrize("cuda_graphs", [False, True])
def test_cuda_parity(pt2_bundle, cuda_graphs):
    from slimkit.runtime.backends import open_backends
    from slimkit.runtime.manifest import read_manifest

    m = read_manifest(pt2_bundle)
    gpu = runtime.Engine(m, open_backends(pt2_bundle, m, "torch", device="cuda", cuda_graphs=cuda_graphs))
    cpu = runtime.load(pt2_bundle)
    x = np.random.default_rng(1).standard_normal((4, 16)).astype(np.float32)
    for _ in range(3):  # captured on the first call, replayed after
        for budget in BUDGETS:
            np.testing.assert_allclose(gpu.run(x, budget=budget), cpu.run(x, budget=budget), rtol=1e-3, atol=1e-4)
            assert gpu.device == "cuda"
