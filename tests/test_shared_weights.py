"""One copy of a nested family's weights: on disk (weights.bin), in memory (share_weights=True), refusals.

The families are nested by construction (each width's tensors are leading slices of the widest one's,
as SortedNet extracts them) under a method name slimkit knows nothing about: sharing is found from the
data. Everything runs real onnxruntime sessions (and the torch backend on torch.export programs).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from slimkit import export, runtime
from slimkit.compress.family import Family, Variant
from slimkit.runtime.backends import session_options
from slimkit.runtime.errors import BundleError, ConfigError
from slimkit.runtime.manifest import read_manifest


def _mlp(width: int, big: nn.Sequential | None = None) -> nn.Sequential:
    """16 -> width -> width -> 4; with ``big``, its leading slices (a SortedNet width of it)."""
    m = nn.Sequential(nn.Linear(16, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 4))
    if big is not None:
        with torch.no_grad():
            for i in (0, 2, 4):
                w = big[i].weight[: m[i].out_features, : m[i].in_features]
                m[i].weight.copy_(w)
                m[i].bias.copy_(big[i].bias[: m[i].out_features])
    return m


class ConvNet(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv1d(1, c, 3, padding=1, bias=False), nn.BatchNorm1d(c), nn.ReLU(),
                                  nn.Conv1d(c, c, 3, padding=1, bias=False), nn.BatchNorm1d(c), nn.ReLU())
        self.head = nn.Linear(c, 4)

    def forward(self, x):
        return self.head(self.body(x).mean(-1))


def _conv(width: int, big: ConvNet | None = None) -> ConvNet:
    """A width of ``big`` with its own BatchNorm statistics (as SortedNet recalibrates them); without
    ``big``, a trained-looking net (BatchNorm affine and statistics away from their initial values)."""
    m = ConvNet(width)
    g = torch.Generator().manual_seed(width)
    with torch.no_grad():
        for name, t in m.state_dict().items():
            if "running" in name or (big is None and ".1." in name or ".4." in name):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)  # private per width
            elif big is not None and t.dim():
                t.copy_(big.state_dict()[name][tuple(slice(0, s) for s in t.shape)])
    return m.eval()


def _family(models: dict[str, nn.Module], example: torch.Tensor) -> Family:
    return Family([Variant.measure(n, m.eval(), example) for n, m in models.items()], method="test",
                  example_input=example)


@pytest.fixture(scope="module")
def mlp_family():
    torch.manual_seed(0)
    big = _mlp(64)
    return _family({f"w{w}": _mlp(w, big) if w < 64 else big for w in (16, 32, 64)}, torch.randn(1, 16))


@pytest.fixture(scope="module")
def mlp_bundles(tmp_path_factory, mlp_family):
    root = tmp_path_factory.mktemp("shared_mlp")
    shared = export.bundle(mlp_family, path=root / "shared", torch_export=True)
    separate = export.bundle(mlp_family, path=root / "separate", share_weights=False)
    return shared, separate


@pytest.fixture(scope="module")
def conv_bundles(tmp_path_factory):
    torch.manual_seed(1)
    big = _conv(16)
    fam = _family({"c8": _conv(8, big), "c16": big}, torch.randn(1, 1, 12))
    root = tmp_path_factory.mktemp("shared_conv")
    return export.bundle(fam, path=root / "shared"), export.bundle(fam, path=root / "separate", share_weights=False)


def _x(engine, batch=5, seed=0):
    shape = engine.input_spec.example_shape
    return np.random.default_rng(seed).standard_normal((batch, *shape[1:])).astype(np.float32)


# -- on disk ---------------------------------------------------------------------------------------------


def test_the_weights_file_is_written_once(mlp_bundles):
    shared, separate = mlp_bundles
    m = read_manifest(shared)
    files = sorted(p.name for p in shared.iterdir())
    assert files.count("weights.bin") == 1 and not any(f.endswith(".data") for f in files)
    assert m.weights is not None and m.weights.path == "weights.bin"
    assert m.weights.bytes == (shared / "weights.bin").stat().st_size
    # every shared tensor is a slice of the widest variant's, so the file holds no more than it
    widest = read_manifest(separate).variants[-1]
    assert m.weights.bytes < (separate / widest.files["onnx"].path).stat().st_size
    for v in m.variants:
        assert v.files["weights"].sha256 == m.weights.sha256
        graph = onnx.load(str(shared / v.files["onnx"].path), load_external_data=False)
        external = [t for t in graph.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
        assert external and {e.value for t in external for e in t.external_data if e.key == "location"} == {"weights.bin"}
        assert all(t.name in m.weights.tensors for t in external)
    onnx_bytes = sum((shared / f).stat().st_size for f in files if not f.endswith(".pt2"))
    separate_bytes = sum(p.stat().st_size for p in separate.iterdir() if not p.name.endswith(".pt2"))
    assert onnx_bytes < 0.75 * separate_bytes


def test_outputs_equal_the_separate_files_in_both_modes(mlp_bundles, conv_bundles):
    for shared, separate in (mlp_bundles, conv_bundles):
        ref = runtime.load(separate, threads=1)
        x = _x(ref)
        default = runtime.load(shared, threads=1)
        one_copy = runtime.load(shared, threads=1, share_weights=True)
        for name in ref.names:
            want = ref.run(x, variant=name)
            np.testing.assert_array_equal(default.run(x, variant=name), want)  # the same graph runs
            np.testing.assert_allclose(one_copy.run(x, variant=name), want, rtol=1e-5, atol=1e-6)


def test_onnxruntime_runs_the_graph_of_the_separate_file(conv_bundles, tmp_path):
    """The Concat nodes over weights.bin ranges and the BatchNorm kept apart are folded at session start."""
    shared, separate = conv_bundles
    assert any(n.op_type == "BatchNormalization" for n in onnx.load(str(shared / "c8.onnx")).graph.node)
    assert not any(n.op_type == "BatchNormalization" for n in onnx.load(str(separate / "c8.onnx")).graph.node)
    for name in ("c8", "c16"):
        seen = []
        for kind, bundle in (("shared", shared), ("separate", separate)):
            opts = session_options(1)
            opts.log_severity_level = 3
            opts.optimized_model_filepath = str(tmp_path / f"{kind}-{name}.onnx")
            opts.add_session_config_entry("session.optimized_model_external_initializers_file_name", f"{kind}.bin")
            ort.InferenceSession(str(bundle / f"{name}.onnx"), opts, providers=["CPUExecutionProvider"])
            g = onnx.load(opts.optimized_model_filepath, load_external_data=False).graph
            seen.append(([n.op_type for n in g.node], sorted(tuple(t.dims) for t in g.initializer)))
        assert seen[0] == seen[1]


def test_a_family_without_shared_tensors_is_written_as_before(tmp_path):
    torch.manual_seed(0)
    convs = {"a": _conv(8), "b": _conv(16)}  # independent: nothing in common
    fam = _family(convs, torch.randn(1, 1, 12))
    path = export.bundle(fam, path=tmp_path / "b")
    assert sorted(p.name for p in path.iterdir()) == ["a.onnx", "b.onnx", "manifest.json"]
    raw = json.loads((path / "manifest.json").read_text())
    assert "weights" not in raw and all(sorted(v["files"]) == ["onnx"] for v in raw["variants"])
    for name, model in convs.items():  # byte for byte what to_onnx writes (BatchNorm folded as always)
        alone = export.to_onnx(model, fam.example_input, tmp_path / f"{name}.onnx")
        assert (path / f"{name}.onnx").read_bytes() == alone.read_bytes()


def test_triton_models_of_a_shared_bundle_find_the_weights_file(mlp_bundles, tmp_path):
    shared, separate = mlp_bundles
    repo = export.to_triton(shared, tmp_path / "repo")
    ref = runtime.load(separate, threads=1)
    x = _x(ref)
    for name in ref.names:
        version = repo / name / "1"
        assert sorted(p.name for p in version.iterdir()) == ["model.onnx", "weights.bin"]
        assert (version / "weights.bin").stat().st_ino == (shared / "weights.bin").stat().st_ino  # one copy on disk
        sess = ort.InferenceSession(str(version / "model.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_array_equal(sess.run(None, {"input": x})[0], ref.run(x, variant=name))


# -- in memory -------------------------------------------------------------------------------------------


def test_share_weights_splits_the_big_layers_and_reads_the_rest_in_place(mlp_bundles):
    shared, _ = mlp_bundles
    m = read_manifest(shared)
    split = m.variant("w64").files["onnx_shared"].path
    g = onnx.load(str(shared / split), load_external_data=False).graph
    assert sum(n.op_type == "Gemm" for n in g.node) > 3  # the 64x64 layer now reads its pieces
    assert {i.name for i in g.input} >= {t.name for t in g.initializer if t.name in m.weights.tensors}
    assert "onnx_shared" not in m.variant("w16").files  # nothing worth splitting: usual graph, in place


def test_torch_backend_serves_every_variant_from_one_state_dict(mlp_bundles):
    shared, separate = mlp_bundles
    eng = runtime.load(shared, backend="torch", threads=1, share_weights=True)
    ref = runtime.load(separate, threads=1)
    x = _x(ref)
    for name in ref.names:
        np.testing.assert_allclose(eng.run(x, variant=name), ref.run(x, variant=name), rtol=1e-5, atol=1e-6)
    small, big = eng._backends[0].module, eng._backends[-1].module  # the loaded programs, to look at
    w_small, w_big = small.get_parameter("2.weight"), big.get_parameter("2.weight")
    assert w_small.untyped_storage().data_ptr() == w_big.untyped_storage().data_ptr()
    assert w_small.shape == (16, 16) and not w_small.is_contiguous()


def test_an_old_bundle_still_loads_and_share_weights_says_it_has_nothing_to_share(tiny_bundle):
    assert read_manifest(tiny_bundle).weights is None
    x = np.zeros((2, 16), np.float32)
    plain = runtime.load(tiny_bundle, threads=1)
    with pytest.warns(UserWarning, match="stores no shared weights"):
        eng = runtime.load(tiny_bundle, threads=1, share_weights=True)
    np.testing.assert_array_equal(eng.run(x), plain.run(x))
    with pytest.raises(ConfigError, match="share_weights must be True, False or None"):
        runtime.load(tiny_bundle, share_weights="yes")


# -- refusals --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("share", [False, True])
def test_a_missing_or_altered_weights_file_is_refused(mlp_bundles, tmp_path, share):
    shared, _ = mlp_bundles
    copy = shutil.copytree(shared, tmp_path / "b")
    data = bytearray((copy / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (copy / "weights.bin").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"weights file 'weights.bin' has sha256"):
        runtime.load(copy, share_weights=share)
    (copy / "weights.bin").unlink()
    with pytest.raises(BundleError, match=r"weights file 'weights.bin' is missing"):
        runtime.load(copy, share_weights=share)


def test_bad_weights_records_are_refused(mlp_bundles, tmp_path):
    shared, _ = mlp_bundles
    copy = shutil.copytree(shared, tmp_path / "b")
    raw = json.loads((copy / "manifest.json").read_text())

    def refused(mutate, match):
        bad = json.loads(json.dumps(raw))
        mutate(bad)
        (copy / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(BundleError, match=match):
            read_manifest(copy, verify=False)

    first = next(iter(raw["weights"]["tensors"]))
    refused(lambda d: d["weights"]["tensors"].__setitem__(first, "float32[4,4]@99999999"), "beyond the end")
    refused(lambda d: d["weights"]["tensors"].__setitem__(first, "floaty[4]@0"), "numpy dtype")
    refused(lambda d: d["variants"][0]["files"]["weights"].__setitem__("sha256", "0" * 64), "does not describe")

    def escape(d):
        for rec in [d["weights"]] + [v["files"]["weights"] for v in d["variants"]]:
            rec["path"] = "../weights.bin"

    refused(escape, "stay inside")


def test_serve_and_the_cli_take_share_weights(mlp_bundles, capsys):
    pytest.importorskip("uvicorn")
    import http.client

    shared, separate = mlp_bundles
    x = np.random.default_rng(0).standard_normal((2, 16)).astype(np.float32)
    body = json.dumps({"inputs": [{"name": "input", "shape": [2, 16], "datatype": "FP32",
                                   "data": x.ravel().tolist()}]}).encode()
    with runtime.serve(shared, port=0, block=False, log_level="warning", share_weights=True) as srv:
        assert srv.app.cfg.share_weights is True
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
        conn.request("POST", f"/v2/models/{shared.name}/infer", body)
        out = json.loads(conn.getresponse().read())
        conn.close()
    want = runtime.load(separate, threads=1).run(x)
    np.testing.assert_allclose(np.array(out["outputs"][0]["data"]).reshape(want.shape), want, rtol=1e-5, atol=1e-6)
    from slimkit.export.cli import main

    assert main(["serve", "--help"]) == 0
    assert "--share-weights" in capsys.readouterr().out


# -- several inputs, dynamic sequence ---------------------------------------------------------------------


class TokenNet(nn.Module):
    """``input_ids`` + ``attention_mask`` -> masked mean of a per-token MLP -> 3 logits (batch and
    sequence dynamic, found from the model)."""

    def __init__(self, hidden: int, big: TokenNet | None = None):
        super().__init__()
        self.emb, self.fc, self.head = nn.Embedding(50, 32), nn.Linear(32, hidden), nn.Linear(hidden, 3)
        if big is not None:  # a width of big: leading slices of its tensors
            with torch.no_grad():
                for name, t in self.state_dict().items():
                    t.copy_(big.state_dict()[name][tuple(slice(0, s) for s in t.shape)])

    def forward(self, input_ids, attention_mask=None):  # the default lets Variant.measure count MACs on ids
        mask = (torch.ones_like(input_ids) if attention_mask is None else attention_mask).unsqueeze(-1).float()
        h = torch.relu(self.fc(self.emb(input_ids))) * mask
        return self.head(h.sum(1) / mask.sum(1).clamp(min=1.0))


def _tokens(batch: int, length: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    mask = (rng.random((batch, length)) < 0.8).astype(np.int64)
    mask[:, 0] = 1
    return {"input_ids": rng.integers(0, 50, (batch, length)), "attention_mask": mask}


def test_a_multi_input_family_with_a_dynamic_sequence_shares_its_weights(tmp_path):
    torch.manual_seed(0)
    big = TokenNet(256).eval()
    models = {"h128": TokenNet(128, big).eval(), "h256": big}
    example = {k: torch.from_numpy(v) for k, v in _tokens(2, 8, seed=0).items()}
    fam = Family([Variant.measure(n, m, example["input_ids"]) for n, m in models.items()], method="test",
                 example_input=example["input_ids"])
    shared = export.bundle(fam, example, tmp_path / "shared")
    separate = export.bundle(fam, example, tmp_path / "separate", share_weights=False)
    m = read_manifest(shared)
    assert [s.name for s in m.inputs] == ["input_ids", "attention_mask"]
    assert all(s.dim_names == ("batch", "sequence") for s in m.inputs)
    assert m.weights is not None and all("weights" in v.files for v in m.variants)
    assert "onnx_shared" in m.variant("h256").files  # the 32x256 layer reads its pieces in share_weights
    ref = runtime.load(separate, threads=1)
    engines = [runtime.load(shared, threads=1), runtime.load(shared, threads=1, share_weights=True)]
    for batch, length in ((1, 5), (3, 11)):  # neither is the export example's (2, 8)
        feed = _tokens(batch, length, seed=batch)
        for name, model in models.items():
            with torch.no_grad():
                want = model(**{k: torch.from_numpy(v) for k, v in feed.items()}).numpy()
            np.testing.assert_allclose(ref.run(feed, variant=name), want, rtol=1e-4, atol=1e-5)
            np.testing.assert_array_equal(engines[0].run(feed, variant=name), ref.run(feed, variant=name))
            np.testing.assert_allclose(engines[1].run(feed, variant=name), want, rtol=1e-4, atol=1e-5)
    for share in (True, False):  # no torch.export programs for several inputs, said either way
        with pytest.raises(BundleError, match="torch_export"):
            runtime.load(shared, backend="torch", share_weights=share)
    with pytest.raises(BundleError, match="single-input models .* onnxruntime backend"):
        runtime.load(shared, backend="torch")
