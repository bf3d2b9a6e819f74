"""The ``slimkit`` command: inspect and bench on a real bundle (without torch), and a miniature demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from slimkit.export.cli import main


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh interpreter and report whether torch was imported."""
    code = ("import sys; from slimkit.export.cli import main; rc = main(sys.argv[1:]); "
            "print('TORCH_LOADED' if 'torch' in sys.modules else 'TORCH_FREE'); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_inspect_lists_variants_without_loading_torch(tiny_bundle):
    r = _run_cli("inspect", str(tiny_bundle))
    assert r.returncode == 0, r.stderr
    for name in ("w8", "w16", "w32"):
        assert name in r.stdout
    assert "sha256 verified" in r.stdout
    assert r.stdout.strip().endswith("TORCH_FREE")


def test_bench_writes_latency_into_the_manifest(tiny_bundle, tmp_path):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    r = _run_cli("bench", str(bundle), "--batches", "1", "4", "--repeats", "5", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("TORCH_FREE")
    manifest = json.loads((bundle / "manifest.json").read_text())
    for v in manifest["variants"]:
        batches = v["latency"]["onnxruntime/cpu"]["batch"]
        assert set(batches) == {"1", "4"} and batches["1"]["p50_ms"] > 0
    # the rewritten manifest still loads, and latency selection now uses the measured numbers
    from slimkit import runtime

    engine = runtime.load(bundle)
    fastest = min(engine.variants, key=lambda v: v.latency["onnxruntime/cpu"]["batch"]["1"]["p50_ms"])
    assert engine.select(latency_ms=1e9).name == engine.names[-1]
    assert engine.select(latency_ms=1e-9, fallback="smallest").name == engine.names[0]
    assert fastest.name in engine.names


def test_tampered_bundle_is_refused_with_a_clear_message(tiny_bundle, tmp_path, capsys):
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    onnx_file = next(bundle.glob("*.onnx"))
    data = bytearray(onnx_file.read_bytes())
    data[-1] ^= 0xFF
    onnx_file.write_bytes(bytes(data))
    assert main(["inspect", str(bundle)]) == 2
    err = capsys.readouterr().err
    assert "sha256" in err and onnx_file.name in err


def test_missing_bundle_is_a_clear_error(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err


def test_export_tensorrt_without_tensorrt_says_how_to_install(tiny_bundle, tmp_path, capsys):
    import importlib.util
    import shutil

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: tests/test_tensorrt.py builds real engines")
    bundle = tmp_path / "b"
    shutil.copytree(tiny_bundle, bundle)
    before = sorted(p.name for p in bundle.iterdir())
    assert main(["export", str(bundle), "--tensorrt", "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed" in err and "pypi.nvidia.com" in err
    assert sorted(p.name for p in bundle.iterdir()) == before  # nothing half-written


def test_demo_runs_end_to_end_in_miniature(tmp_path, monkeypatch):
    monkeypatch.setenv("SLIMKIT_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "demo"
    rc = main(["demo", "--out", str(out), "--samples", "1500", "--teacher-epochs", "2", "--epochs", "1",
               "--quiet", "--threads", "1"])
    assert rc == 0
    result = json.loads((out / "results.json").read_text())
    rows = result["rows"]
    assert [r["variant"] for r in rows] == ["w0.25", "w0.50", "w0.75", "w1.00"]
    for r in rows:
        assert r["acc_onnx"] == pytest.approx(r["acc_torch"], abs=0.01)  # ONNX computes what PyTorch does
        assert r["p50_ms_b1"] > 0 and r["p50_ms_b64"] > 0
    assert rows[0]["macs"] < rows[-1]["macs"] / 4
    assert (out / "bundle" / "manifest.json").is_file() and (out / "family" / "family.json").is_file()
    assert Path(result["paths"]["plot"]).stat().st_size > 1000
