"""TensorRT export and backend.

The GPU tests (marked ``tensorrt``) need the ``tensorrt`` package, cuda-python and an NVIDIA GPU; they
skip with the reason otherwise (TensorRT's libraries come from NVIDIA's index, so they cannot be
installed on this project's CPU machines). What runs everywhere: the FP16 cast TensorRT 11 needs
(checked with onnxruntime), argument checks, and the install message when TensorRT is missing.
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from slimkit import export, runtime
from slimkit.export.tensorrt import add_engines, cast_to_fp16
from slimkit.runtime.errors import BundleError, ConfigError, MissingExtraError


def _gpu_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu12)"
    if importlib.util.find_spec("cuda") is None:
        return "cuda-python is not installed (pip install cuda-python)"
    try:
        from slimkit.runtime.backends_tensorrt import compute_capability

        compute_capability()
    except Exception as e:
        return f"no usable CUDA GPU ({e})"
    return None


GPU_REASON = _gpu_reason()


def test_fp16_cast_keeps_io_types_and_matches(tmp_path):
    """The strongly-typed (TensorRT 11) FP16 path, run here with onnxruntime's FP16 kernels."""
    import torch

    from slimkit.compress import zoo

    torch.manual_seed(0)
    model = zoo.build("rescnn").eval()
    src = export.to_onnx(model, torch.randn(1, 1, 40), tmp_path / "m.onnx")
    half = cast_to_fp16(onnx.load(str(src)))
    onnx.save(half, str(tmp_path / "h.onnx"))
    assert half.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert half.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert {i.data_type for i in half.graph.initializer if i.data_type in (1, 10)} == {onnx.TensorProto.FLOAT16}
    x = np.random.default_rng(0).standard_normal((5, 1, 40)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(tmp_path / "h.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-2 * np.abs(ref).max())  # FP16: ~3 significant digits


def test_arguments_are_checked_before_tensorrt_is_needed(tiny_bundle):
    onnx_file = tiny_bundle / "w8.onnx"
    for kwargs, msg in (({"min_batch": 8, "max_batch": 4}, "min_batch <= opt_batch <= max_batch"),
                        ({"opt_batch": 0}, "opt_batch must be a positive int"),
                        ({"fp16": "yes"}, "fp16 must be True or False"),
                        ({"workspace": -1}, "workspace must be")):
        with pytest.raises(ConfigError, match=msg):
            export.to_tensorrt(onnx_file, "x.plan", **kwargs)
    with pytest.raises(ConfigError, match="is not a file"):
        export.to_tensorrt(tiny_bundle / "nope.onnx", "x.plan")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install(tiny_bundle, tmp_path):
    with pytest.raises(MissingExtraError, match=r"pip install --extra-index-url https://pypi\.nvidia\.com"):
        export.to_tensorrt(tiny_bundle / "w8.onnx", tmp_path / "w8.plan")
    copy = tmp_path / "b"
    shutil.copytree(tiny_bundle, copy)
    before = (copy / "manifest.json").read_text()
    with pytest.raises(MissingExtraError):
        add_engines(copy, fp16=True)
    assert (copy / "manifest.json").read_text() == before and not (tmp_path / "w8.plan").exists()
    with pytest.raises(MissingExtraError, match="TensorRT"):
        runtime.load(tiny_bundle, backend="tensorrt")


@pytest.mark.tensorrt
@pytest.mark.skipif(GPU_REASON is not None, reason=str(GPU_REASON))
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engines_serve_like_onnxruntime(tiny_bundle, tmp_path, precision):
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    keys = add_engines(b, fp16=precision == "fp16", max_batch=16)
    ort_eng, trt_eng = runtime.load(b), runtime.load(b, backend="tensorrt")
    assert trt_eng.latency_key == "tensorrt/cuda" and keys[0].startswith("tensorrt/")
    x = np.random.default_rng(0).standard_normal((7, 16)).astype(np.float32)
    tol = 1e-4 if precision == "fp32" else 2e-2
    for budget in (0.25, 0.5, 0.75, 1.0):
        np.testing.assert_allclose(trt_eng.run(x, budget=budget), ort_eng.run(x, budget=budget), rtol=tol, atol=tol)
        assert trt_eng.last == ort_eng.last
    with pytest.raises(runtime.InputError, match="profile"):
        trt_eng.run(np.zeros((17, 16), np.float32))


@pytest.mark.tensorrt
@pytest.mark.skipif(GPU_REASON is not None, reason=str(GPU_REASON))
def test_missing_engine_for_this_gpu_is_explained(tiny_bundle):
    with pytest.raises(BundleError, match="no TensorRT engine for this machine"):
        runtime.load(tiny_bundle, backend="tensorrt")


@pytest.mark.tensorrt
@pytest.mark.skipif(GPU_REASON is not None, reason=str(GPU_REASON))
def test_int8_engines_go_to_the_twins(tiny_mlp_family, tmp_path):
    import torch

    calib = [torch.randn(32, 16) for _ in range(4)]
    b = export.bundle(tiny_mlp_family, tiny_mlp_family.example_input, tmp_path / "b", quantize="int8",
                      calibration=calib, latency_batches=())
    add_engines(b, int8=True, calibration=calib, max_batch=8)
    m = runtime.read_manifest(b)
    assert all(any(k.startswith("tensorrt/") for k in t.files) for t in m.twins)
    assert not any(k.startswith("tensorrt/") for v in m.variants for k in v.files)
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    from slimkit.runtime.backends import open_backends

    m8 = m.with_precision("int8")
    eng = runtime.Engine(m8, open_backends(b, m8, "tensorrt"))
    ref = runtime.load(b)
    for budget in (0.25, 1.0):
        y = eng.run(x, budget=budget)
        assert eng.last == ref.select(budget=budget).name + "-int8"
        assert np.abs(y - ref.run(x, budget=budget)).max() < 0.1 * np.abs(y).max() + 0.1
