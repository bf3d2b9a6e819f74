"""export.bundle: manifest contents, overwrite rules, all-or-nothing writes, a sequence-model bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from slimkit import export, runtime
from slimkit.compress.family import Family, Variant
from slimkit.runtime.errors import ConfigError, ExportError, InputError
from slimkit.runtime.manifest import read_manifest, sha256_file


def _mlp(h):
    return nn.Sequential(nn.Linear(16, h), nn.ReLU(), nn.Linear(h, 4))


def _family(models, example=None):
    example = torch.randn(1, 16) if example is None else example
    return Family([Variant.measure(name, m, example) for name, m in models.items()], method="test",
                  example_input=example)


class Noisy(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 4)

    def forward(self, x):
        return self.lin(x) + torch.randn(x.shape[0], 4)


def _leftovers(parent, target_name):
    return [p.name for p in parent.iterdir() if p.name.startswith(f".{target_name}.")]


def test_manifest_describes_the_family(tiny_bundle, tiny_mlp_family):
    raw = json.loads((tiny_bundle / "manifest.json").read_text())
    assert raw["format"] == "slimkit-bundle" and raw["version"] == 1
    assert raw["inputs"] == [{"name": "input", "dtype": "float32", "shape": [None, 16],
                              "dim_names": ["batch", None], "example_shape": [1, 16]}]
    assert raw["outputs"][0]["shape"] == [None, 4] and raw["task"] == "classification"
    assert raw["method"] == "test" and raw["source"] == {"params": 1, "macs": 1}
    m = read_manifest(tiny_bundle)
    assert m.names == tiny_mlp_family.names
    for entry, v in zip(m.variants, tiny_mlp_family.variants, strict=False):
        assert (entry.params, entry.macs, entry.config, entry.latency) == (v.params, v.macs, v.config, {})
        sizes = {k: entry.metrics.pop(k) for k in ("onnx_bytes", "onnx_zlib_bytes")}
        assert entry.metrics == v.metrics  # the family's metrics, plus the file's honest sizes
        assert sizes["onnx_bytes"] == (tiny_bundle / f"{v.name}.onnx").stat().st_size
        assert 0 < sizes["onnx_zlib_bytes"] < sizes["onnx_bytes"]
        assert entry.files["onnx"].path == f"{v.name}.onnx"
        assert entry.files["onnx"].sha256 == sha256_file(tiny_bundle / f"{v.name}.onnx")
    assert sorted(p.name for p in tiny_bundle.iterdir()) == ["manifest.json", "w16.onnx", "w32.onnx", "w8.onnx"]
    assert _leftovers(tiny_bundle.parent, "bundle") == []


def test_bundle_output_matches_pytorch(tiny_bundle, tiny_mlp_family):
    eng = runtime.load(tiny_bundle)
    x = torch.randn(5, 16)
    for v in tiny_mlp_family.variants:
        np.testing.assert_allclose(eng.run(x.numpy(), variant=v.name), v.model(x).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_existing_target_needs_overwrite(tmp_path):
    fam = _family({"a": _mlp(4)})
    target = tmp_path / "out"
    target.mkdir()
    (target / "keep.txt").write_text("x")
    with pytest.raises(ConfigError, match="overwrite=True"):
        export.bundle(fam, fam.example_input, target)
    assert (target / "keep.txt").exists()
    export.bundle(fam, path=target, overwrite=True)
    assert sorted(p.name for p in target.iterdir()) == ["a.onnx", "manifest.json"]
    assert _leftovers(tmp_path, "out") == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a directory"):
        export.bundle(fam, tmp_path / "file")


def test_a_failing_variant_leaves_nothing(tmp_path):
    torch.manual_seed(0)
    fam = _family({"good": _mlp(4), "zbad": Noisy()})
    with pytest.raises(ExportError, match="differs from PyTorch"):
        export.bundle(fam, fam.example_input, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_failing_overwrite_keeps_the_old_bundle(tiny_bundle, tmp_path):
    import shutil

    target = shutil.copytree(tiny_bundle, tmp_path / "out")
    fam = _family({"zbad": Noisy()})
    with pytest.raises(ExportError):
        export.bundle(fam, fam.example_input, target, overwrite=True)
    assert read_manifest(target).names == ["w8", "w16", "w32"]
    assert _leftovers(tmp_path, "out") == []


def test_bad_arguments(tmp_path):
    fam = _family({"a": _mlp(4)})
    fam.variants[0].name = "../a"
    with pytest.raises(ConfigError, match="not safe"):
        export.bundle(fam, fam.example_input, tmp_path / "out")
    with pytest.raises(ConfigError, match="Family"):
        export.bundle(_mlp(4), torch.randn(1, 16), tmp_path / "out")
    with pytest.raises(ConfigError, match="target directory"):
        export.bundle(fam)
    assert list(tmp_path.iterdir()) == []


class GRUClassifier(nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.rnn = nn.GRU(8, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 3)

    def forward(self, x):
        y, _ = self.rnn(x)  # (B, T, hidden)
        return self.head(y[:, -1])


def test_sequence_bundle_with_dynamic_length(tmp_path):
    torch.manual_seed(0)
    example = torch.randn(1, 12, 8)
    fam = _family({"h4": GRUClassifier(4), "h8": GRUClassifier(8)}, example)
    path = export.bundle(fam, example, tmp_path / "seq", dynamic_dims={1: "length"})
    spec = read_manifest(path).inputs[0]
    assert spec.shape == (None, None, 8) and spec.example_shape == (1, 12, 8)
    eng = runtime.load(path, threads=1)
    for shape in [(2, 5, 8), (3, 20, 8)]:
        x = torch.randn(*shape)
        np.testing.assert_allclose(eng.run(x.numpy(), budget=1.0), fam["h8"].model(x).detach().numpy(),
                                   rtol=1e-4, atol=1e-5)
    with pytest.raises(InputError, match=r"expected float32 of shape \[batch, length, 8\], got float32 of "
                                         r"shape \(2, 5, 4\)"):
        eng.run(np.zeros((2, 5, 4), np.float32))
    res = eng.measure_latency(batches=(2,), repeats=3, warmup=1)  # times the manifest's example length
    assert set(res) == {"h4", "h8"} and res["h4"][2]["p50_ms"] > 0
