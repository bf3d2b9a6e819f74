"""``export.to_triton``: every config.pbtxt parsed into Triton's own ``ModelConfig`` protobuf (from
``tritonclient[grpc]``), every model file run with onnxruntime against the engine."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

from slimkit import export, runtime
from slimkit.runtime.errors import ConfigError
from slimkit.runtime.manifest import FileEntry, read_manifest, sha256_file, tensorrt_key, write_manifest

mc = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                         reason='needs tritonclient[grpc] for Triton\'s ModelConfig schema: pip install "tritonclient[grpc]"')
text_format = pytest.importorskip("google.protobuf.text_format")


def _parse(path):
    return text_format.Parse(path.read_text(), mc.ModelConfig())


@pytest.fixture(scope="module")
def int8_tiny_bundle(tmp_path_factory, tiny_mlp_family):
    import torch

    path = tmp_path_factory.mktemp("triton") / "bundle"
    calib = [torch.randn(32, 16) for _ in range(4)]
    export.bundle(tiny_mlp_family, tiny_mlp_family.example_input, path, quantize="int8", calibration=calib,
                  latency_batches=())
    return path


def test_every_variant_and_twin_is_a_valid_model(int8_tiny_bundle, tmp_path):
    repo = export.to_triton(int8_tiny_bundle, tmp_path / "repo", preferred_batch_sizes=(8, 32), instances=2)
    m = read_manifest(int8_tiny_bundle)
    expected = m.names + [t.name for t in m.twins]
    assert sorted(p.name for p in repo.iterdir()) == sorted(expected)
    x = np.random.default_rng(0).standard_normal((3, 16)).astype(np.float32)
    for name in expected:
        cfg = _parse(repo / name / "config.pbtxt")
        assert cfg.name == name and cfg.platform == "onnxruntime_onnx" and cfg.max_batch_size == 64
        assert [(i.name, i.data_type, list(i.dims)) for i in cfg.input] == [("input", mc.TYPE_FP32, [16])]
        assert [(o.name, list(o.dims)) for o in cfg.output] == [("output", [4])]
        assert list(cfg.dynamic_batching.preferred_batch_size) == [8, 32]
        assert cfg.dynamic_batching.max_queue_delay_microseconds == 100
        assert (cfg.instance_group[0].count, cfg.instance_group[0].kind) == (2, mc.ModelInstanceGroup.KIND_CPU)
        v = m.variant(name)
        assert int(cfg.parameters["slimkit.macs"].string_value) == v.macs
        assert cfg.parameters["slimkit.precision"].string_value == v.precision
        assert json.loads(cfg.parameters["slimkit.metrics"].string_value) == v.metrics
        sess = ort.InferenceSession(str(repo / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == [cfg.input[0].name]
        eng = runtime.load(int8_tiny_bundle) if v.precision == "fp32" else None
        if eng is not None:
            np.testing.assert_allclose(sess.run(None, {"input": x})[0], eng.run(x, variant=name), rtol=1e-6)
        else:
            assert sess.run(None, {"input": x})[0].shape == (3, 4)


def test_tensorrt_plans_get_a_tensorrt_model(tiny_bundle, tmp_path):
    """Config generation for plans. The plan bytes here are placeholders (TensorRT cannot be installed
    on this machine); only the repository layout and Triton's schema are checked."""
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    m = read_manifest(b)
    for v in m.variants:
        for cc in ((8, 9), (9, 0)):
            key = tensorrt_key("10.16.1.11", cc)
            f = b / f"{v.name}.sm{cc[0]}{cc[1]}.plan"
            f.write_bytes(b"plan bytes of " + v.name.encode())
            v.files[key] = FileEntry(f.name, sha256_file(f), {"max_batch": 32, "precision": "fp16"})
    write_manifest(b, m)
    repo = export.to_triton(b, tmp_path / "repo", prefix="mlp-")
    cfg = _parse(repo / "mlp-w8-trt" / "config.pbtxt")
    assert cfg.platform == "tensorrt_plan" and cfg.max_batch_size == 32
    assert dict(cfg.cc_model_filenames) == {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}
    assert cfg.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert (repo / "mlp-w8-trt" / "1" / "model_sm90.plan").read_bytes() == b"plan bytes of w8"
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        [f"mlp-{n}" for n in m.names] + [f"mlp-{n}-trt" for n in m.names])


def test_existing_models_and_bad_arguments(tiny_bundle, tmp_path):
    repo = tmp_path / "repo"
    (repo / "other").mkdir(parents=True)
    export.to_triton(tiny_bundle, repo)
    assert (repo / "other").is_dir()  # other models are left alone
    before = (repo / "w8" / "config.pbtxt").read_text()
    with pytest.raises(ConfigError, match="already has models"):
        export.to_triton(tiny_bundle, repo, max_batch_size=8)
    assert (repo / "w8" / "config.pbtxt").read_text() == before
    export.to_triton(tiny_bundle, repo, max_batch_size=8, overwrite=True)
    assert _parse(repo / "w8" / "config.pbtxt").max_batch_size == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["repo"]  # no temp dirs left
    for kwargs, msg in (({"kind": "GPU"}, "kind must be"), ({"instances": 0}, "instances"),
                        ({"preferred_batch_sizes": (128,)}, "preferred_batch_sizes"),
                        ({"precisions": ["int8"]}, "not in this bundle")):
        with pytest.raises(ConfigError, match=msg):
            export.to_triton(tiny_bundle, tmp_path / "r2", **kwargs)
