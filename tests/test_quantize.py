"""INT8 twins: ``export.bundle(..., quantize="int8")`` with onnxruntime static quantisation, real data.

A two-variant MLP family trained on scikit-learn's digits; calibration on its validation split.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from slimkit import compress, export, runtime
from slimkit.export.quantize import calibration_batches, quantize_onnx
from slimkit.runtime.backends import open_backends
from slimkit.runtime.errors import BundleError, ConfigError
from slimkit.runtime.manifest import read_manifest


@pytest.fixture(scope="module")
def digits():
    return compress.data.sklearn_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def digits_family(digits):
    from slimkit.compress.family import Family, Variant

    variants = []
    for h in (16, 64):
        torch.manual_seed(0)
        m = nn.Sequential(nn.Linear(64, h), nn.ReLU(), nn.Linear(h, 10))
        compress.fit(m, digits.train, digits.val, epochs=15, progress=False)
        variants.append(Variant.measure(f"h{h}", m, digits.example_input, metrics=compress.evaluate(m, digits.val)))
    return Family(variants, method="test", example_input=digits.example_input, source={"params": 1, "macs": 1})


@pytest.fixture(scope="module")
def int8_bundle(tmp_path_factory, digits, digits_family):
    path = tmp_path_factory.mktemp("int8") / "bundle"
    export.bundle(digits_family, digits.example_input, path, quantize="int8", calibration=digits.val,
                  eval_data=digits.test)
    return path


def _int8_engine(path):
    m = read_manifest(path).with_precision("int8")
    return runtime.Engine(m, open_backends(path, m, threads=1), bundle_dir=path, threads=1)


def test_twins_are_recorded_like_variants(int8_bundle):
    m = read_manifest(int8_bundle)
    assert m.names == ["h16", "h64"]  # the FP32 serving set is unchanged
    assert [t.name for t in m.twins] == ["h16-int8", "h64-int8"]
    assert m.precisions == ["fp32", "int8"]
    for t in m.twins:
        base = m.variant(t.base)
        assert (t.precision, t.macs, t.params) == ("int8", base.macs, base.params)
        assert t.config["quantization"]["method"] == "static"
        assert t.config["metrics_on"] == "eval_data"
        # a lossy transform: within 3 points of its FP32 variant on the same test data
        assert t.metrics["accuracy"] >= t.config["fp32_metrics_same_data"]["accuracy"] - 0.03
        assert t.config["top1_agreement_with_fp32"] > 0.9
        for v in (t, base):  # both timed in the same run
            assert set(v.latency["onnxruntime/cpu"]["batch"]) == {"1", "32"}
        ops = {n.op_type for n in onnx.load(str(int8_bundle / t.files["onnx"].path)).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops


def test_int8_engine_selects_by_budget_like_fp32(int8_bundle, digits):
    fp32, int8 = runtime.load(int8_bundle, threads=1), _int8_engine(int8_bundle)
    x = np.concatenate([x.numpy() for x, _ in digits.test])
    for budget in (0.3, 0.5, 1.0):
        a, b = fp32.run(x, budget=budget), int8.run(x, budget=budget)
        assert int8.last == fp32.last + "-int8"
        assert (a.argmax(-1) == b.argmax(-1)).mean() > 0.9
    assert fp32.names == ["h16", "h64"]


def test_precision_errors(tiny_bundle, int8_bundle):
    with pytest.raises(ConfigError, match="no 'int8' variants.*quantize"):
        read_manifest(tiny_bundle).with_precision("int8")
    assert read_manifest(int8_bundle).with_precision("fp32").names == ["h16", "h64"]


def test_bad_arguments_write_nothing(tmp_path, digits_family, digits):
    target = tmp_path / "b"
    with pytest.raises(ConfigError, match="quantize must be one of"):
        export.bundle(digits_family, digits.example_input, target, quantize="int4")
    with pytest.raises(ConfigError, match='quantize="int8"'):
        export.bundle(digits_family, digits.example_input, target, calibration=digits.val)
    with pytest.raises(ConfigError, match="calibration must be"):
        export.bundle(digits_family, digits.example_input, target, quantize="int8", calibration="val.npy")
    assert not target.exists() and list(tmp_path.iterdir()) == []


def test_dynamic_fallback_warns_and_runs(tmp_path, tiny_bundle):
    import onnxruntime as ort

    src = tiny_bundle / "w32.onnx"
    with pytest.warns(UserWarning, match="dynamic INT8"):
        recipe = quantize_onnx(src, tmp_path / "q.onnx")
    assert recipe["method"] == "dynamic"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node}
    assert "DynamicQuantizeLinear" in ops or "MatMulInteger" in ops
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    ref = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    got = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert np.abs(got - ref).max() < 0.1 * np.abs(ref).max()
    assert list(tmp_path.iterdir()) == [tmp_path / "q.onnx"]  # no temp files left


def test_calibration_inputs_and_errors():
    x = torch.randn(4, 16)
    assert [b.shape for b in calibration_batches(x)] == [(4, 16)]
    assert len(calibration_batches([(x, None), (x, None)], max_batches=1)) == 1
    with pytest.raises(ConfigError, match="no batches"):
        calibration_batches([])
    with pytest.raises(ConfigError, match="calibration data is missing"):
        quantize_onnx(__file__, "x.onnx", method="static")


def test_manifest_rejects_orphan_twins(int8_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(int8_bundle, copy)
    data = json.loads((copy / "manifest.json").read_text())
    data["twins"][0]["base"] = "nope"
    (copy / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="must name its variant in 'base'"):
        read_manifest(copy)


def test_bundles_without_twins_keep_the_old_manifest_shape(tiny_bundle):
    data = json.loads((tiny_bundle / "manifest.json").read_text())
    assert "twins" not in data
    assert all("precision" not in v and "base" not in v for v in data["variants"])
    assert read_manifest(tiny_bundle).precisions == ["fp32"]
