"""The bundle schema: validation of every field, sha256 and path checks, atomic latency updates.

These tests build bundles by hand (bytes instead of ONNX files): the manifest never looks inside.
"""

from __future__ import annotations

import json
import os

import pytest

from slimkit.runtime.errors import BundleError, ConfigError
from slimkit.runtime.manifest import (
    FileEntry,
    Manifest,
    TensorSpec,
    VariantEntry,
    read_manifest,
    sha256_file,
    update_latency,
    write_manifest,
)


def _make_bundle(root, names=("small", "big")):
    root.mkdir(parents=True, exist_ok=True)
    variants = []
    for i, name in enumerate(names):
        f = root / f"{name}.onnx"
        f.write_bytes(os.urandom(64))
        variants.append(VariantEntry(name, params=10 * (i + 1), macs=100 * (i + 1), metrics={"accuracy": 0.5},
                                     config={"i": i}, files={"onnx": FileEntry(f.name, sha256_file(f))}))
    m = Manifest(inputs=[TensorSpec("input", "float32", (None, 1, 40), ("batch", None, None), (1, 1, 40))],
                 outputs=[TensorSpec("output", "float32", (None, 10))], variants=variants[::-1],
                 task="classification", method="test", source={"params": 30})
    write_manifest(root, m)
    return root


def _edit(root, fn):
    mf = root / "manifest.json"
    data = json.loads(mf.read_text())
    fn(data)
    mf.write_text(json.dumps(data))


def test_roundtrip_sorts_variants_and_keeps_every_field(tmp_path):
    root = _make_bundle(tmp_path / "b")
    m = read_manifest(root)
    assert m.names == ["small", "big"]
    assert m.inputs[0].shape == (None, 1, 40) and m.inputs[0].dim_names == ("batch", None, None)
    assert m.inputs[0].example_shape == (1, 1, 40)
    assert m.variants[1].config == {"i": 1} and m.variants[1].metrics == {"accuracy": 0.5}
    assert m.source == {"params": 30} and m.method == "test" and m.version == 1
    assert m.inputs[0].describe() == "float32 of shape [batch, 1, 40]"
    assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_tampered_file_names_file_and_both_hashes(tmp_path):
    root = _make_bundle(tmp_path / "b")
    f = root / "big.onnx"
    expected = sha256_file(f)
    data = bytearray(f.read_bytes())
    data[10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError) as e:
        read_manifest(root)
    msg = str(e.value)
    assert "big.onnx" in msg and expected in msg and sha256_file(f) in msg
    read_manifest(root, verify=False)  # structure alone is still fine


@pytest.mark.parametrize("bad", ["../x.onnx", "/etc/passwd", "sub/../../x.onnx", "C:\\x.onnx", ""])
def test_paths_outside_the_bundle_are_refused(tmp_path, bad):
    root = _make_bundle(tmp_path / "b")
    _edit(root, lambda d: d["variants"][0]["files"]["onnx"].update(path=bad))
    with pytest.raises(BundleError, match="inside|outside|relative"):
        read_manifest(root, verify=False)


def test_symlink_escaping_the_bundle_is_refused(tmp_path):
    root = _make_bundle(tmp_path / "b")
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((root / "small.onnx").read_bytes())
    (root / "small.onnx").unlink()
    (root / "small.onnx").symlink_to(outside)
    with pytest.raises(BundleError, match="outside the bundle"):
        read_manifest(root)


def test_unknown_version_says_which_versions_are_supported(tmp_path):
    root = _make_bundle(tmp_path / "b")
    _edit(root, lambda d: d.update(version=2))
    with pytest.raises(BundleError, match=r"version 2 is not supported.*\[1\]"):
        read_manifest(root)
    _edit(root, lambda d: d.update(version=True))  # True == 1 in Python, but not a version
    with pytest.raises(BundleError, match="not supported"):
        read_manifest(root)


def test_missing_file(tmp_path):
    root = _make_bundle(tmp_path / "b")
    (root / "small.onnx").unlink()
    with pytest.raises(BundleError, match="small.onnx.*missing"):
        read_manifest(root)


@pytest.mark.parametrize("edit, match", [
    (lambda d: d.update(format="other"), "not a slimkit bundle"),
    (lambda d: d.pop("variants"), "'variants' is missing"),
    (lambda d: d.update(variants=[]), "at least one variant"),
    (lambda d: d.update(inputs={}), "'inputs' must be a list"),
    (lambda d: d["variants"][0].pop("macs"), "'macs' is missing"),
    (lambda d: d["variants"][0].update(params="12"), "'params' must be int"),
    (lambda d: d["variants"][0].update(params=True), "'params' must be int"),
    (lambda d: d["variants"][0].update(name="../evil"), "not safe"),
    (lambda d: d["variants"][1].update(name=d["variants"][0]["name"]), "unique"),
    (lambda d: d["variants"][0]["files"]["onnx"].update(sha256="abc"), "64 lowercase hex"),
    (lambda d: d["variants"][0].update(files={}), "'files' is empty"),
    (lambda d: d["inputs"][0].update(dtype="floaty"), "not a numpy dtype"),
    (lambda d: d["inputs"][0].update(shape=[None, -1]), "non-negative"),
    (lambda d: d["inputs"][0].update(example_shape=[1, 2, 40]), "example_shape"),
    (lambda d: d["variants"][0].update(latency={"onnxruntime/cpu": {"batch": {"1": {"p50_ms": 1}}}}),
     "'p95_ms' is missing"),
])
def test_malformed_fields_name_the_field(tmp_path, edit, match):
    root = _make_bundle(tmp_path / "b")
    _edit(root, edit)
    with pytest.raises(BundleError, match=match):
        read_manifest(root)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        read_manifest(tmp_path / "nope")
    with pytest.raises(BundleError, match="no manifest.json"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(tmp_path)


def test_update_latency_merges_and_writes_atomically(tmp_path):
    root = _make_bundle(tmp_path / "b")
    update_latency(root, "onnxruntime/cpu", {"small": {1: {"p50_ms": 0.1, "p95_ms": 0.2, "repeats": 10}}},
                   threads=1)
    update_latency(root, "onnxruntime/cpu", {"small": {64: {"p50_ms": 1.0, "p95_ms": 2.0}},
                                             "big": {1: {"p50_ms": 0.3, "p95_ms": 0.4}}})
    m = read_manifest(root)  # hashes untouched, schema still valid
    small = m.variant("small").latency["onnxruntime/cpu"]
    assert small["batch"]["1"] == {"p50_ms": 0.1, "p95_ms": 0.2, "repeats": 10}
    assert small["batch"]["64"]["p50_ms"] == 1.0 and small["threads"] == 1 and "measured_at" in small
    assert m.variant("big").latency["onnxruntime/cpu"]["batch"]["1"]["p95_ms"] == 0.4
    assert sorted(p.name for p in root.iterdir()) == ["big.onnx", "manifest.json", "small.onnx"]
    with pytest.raises(ConfigError, match="p95_ms"):
        update_latency(root, "onnxruntime/cpu", {"big": {1: {"p50_ms": 0.3}}})
    with pytest.raises(ConfigError, match="<backend>/<device>"):
        update_latency(root, "cpu", {"big": {1: {"p50_ms": 0.3, "p95_ms": 0.4}}})


def test_write_refuses_an_invalid_manifest(tmp_path):
    root = _make_bundle(tmp_path / "b")
    m = read_manifest(root)
    m.variants[0].name = "a/b"
    with pytest.raises(BundleError, match="not safe"):
        write_manifest(root, m)
    read_manifest(root)  # the old manifest is untouched
