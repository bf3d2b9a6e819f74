"""The GPU check (``python -m bench.gpu``, issue 18) on CPU in its small mode, so it is not broken when a
GPU comes: the real families are built, bundled and run on every backend this machine has; CUDA-only
backends must be reported as skipped with a reason. No timing is asserted, only that figures exist.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CPU_BACKENDS = ("onnxruntime/cpu", "eager", "torch.export")
CUDA_ONLY = ("torch.export+cuda_graphs", "onnxruntime/cuda", "tensorrt")


def _bench_gpu(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.gpu", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """One quick CPU run into a temp dir, with ``$OUT`` set as on the device machine."""
    out = tmp_path_factory.mktemp("gpu-check")
    device_out = out / "device-out"
    device_out.mkdir()
    proc = _bench_gpu("--device", "cpu", "--quick", "--threads", "1", "--out", str(out),
                      env={"OUT": str(device_out)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return {"out": out, "device_out": device_out, "stdout": proc.stdout,
            "json": json.loads((out / "results.json").read_text()), "md": (out / "GPU_RESULTS.md").read_text()}


def test_results_name_the_machine_and_both_families(cpu_run):
    res = cpu_run["json"]
    env = res["environment"]
    assert env["device"] == "cpu" and env["date_utc"] and env["libraries"]["torch"] and env["libraries"]["onnxruntime"]
    assert "CPUExecutionProvider" in env["onnxruntime_providers"]
    assert res["settings"]["mode"] == "quick" and res["targets_thresholds"]["parity_max_abs"] == 1e-3
    assert set(res["families"]) == {"demo", "encoder"}
    for fam in res["families"].values():
        assert "error" not in fam, fam.get("traceback")
        names = [v["name"] for v in fam["variants"]]
        assert names == ["w0.25", "w1.00"]
        macs = [v["macs"] for v in fam["variants"]]
        assert macs[0] < macs[1]
        assert list(fam["backends"]) == [*CPU_BACKENDS, *CUDA_ONLY]


def test_every_cpu_backend_matches_onnxruntime(cpu_run):
    for fam_name, fam in cpu_run["json"]["families"].items():
        for name in CPU_BACKENDS[1:]:
            be = fam["backends"][name]
            assert be["status"] == "measured" and be["device"] == "cpu", (fam_name, name, be)
            assert set(be["parity"]) == {"w0.25", "w1.00"}
            for variant, p in be["parity"].items():
                assert p["finite"] and p["batches"] == [1, 64], (fam_name, name, variant, p)
                assert 0 <= p["max_abs"] <= 1e-3, (fam_name, name, variant, p)
    parity = [r for r in cpu_run["json"]["targets"] if r["target"] == "parity"]
    assert len(parity) == 4 and all(r["verdict"] == "pass" for r in parity)


def test_cuda_only_backends_are_skipped_with_a_reason(cpu_run):
    for fam in cpu_run["json"]["families"].values():
        for name in CUDA_ONLY:
            be = fam["backends"][name]
            assert be["status"] == "skipped" and "--device cpu" in be["reason"], be
        assert "CPUExecutionProvider" in fam["backends"]["onnxruntime/cuda"]["reason"]
        assert "TensorRT" in fam["backends"]["tensorrt"]["reason"]
        assert "skipped" in fam["cuda_graphs"]
    for name in CUDA_ONLY:
        assert f"| {name} | skipped |" in cpu_run["md"]
        assert f"skipped demo/{name}:" in cpu_run["stdout"]


def test_latency_throughput_and_ratios_are_recorded(cpu_run):
    res = cpu_run["json"]
    m = res["settings"]["measure"]
    for fam_name, fam in res["families"].items():
        timed = CPU_BACKENDS if fam_name == "demo" else CPU_BACKENDS[1:]  # encoder: reference not timed
        assert "not timed" in fam["backends"]["onnxruntime/cpu"].get("timing", "") or fam_name == "demo"
        for name in timed:
            be = fam["backends"][name]
            for batch in ("1", "64"):
                lat = be["latency"][batch]
                assert lat["batch"] == int(batch) and set(lat["per_variant"]) == {"w0.25", "w1.00"}
                for p in lat["per_variant"].values():
                    assert 0 < p["p50_ms"] <= p["p99_ms"] and p["throughput_per_s"] > 0
                    assert p["calls"] == m["rounds"] * m["calls"]
                assert lat["speedup"]["of"] == "w0.25" and lat["speedup"]["median"] > 0
            sw = be["switching"]
            assert sw["batch"] == 1 and sw["ratio_alternate_vs_stay"]["median"] > 0
    speed = [r for r in res["targets"] if r["target"] != "parity"]
    assert speed and all(r["verdict"] == "n/a" for r in speed)  # GPU targets: not judged on a CPU run


def test_markdown_report_and_out_copies(cpu_run):
    md = cpu_run["md"]
    for heading in ("# GPU check (issue 18)", "## Environment", "## Targets", "### Parity against onnxruntime CPU",
                    "### Latency at batch 1", "### Latency at batch 64", "### Ratios"):
        assert heading in md
    assert "| date (UTC) |" in md and "| libraries |" in md
    for name in ("GPU_RESULTS.md", "results.json"):
        assert (cpu_run["device_out"] / name).read_bytes() == (cpu_run["out"] / name).read_bytes()


def test_gpu_results_are_judged_and_rendered(cpu_run, tmp_path):
    """The GPU-only parts of the report (GPU row, TF32-off parity, CUDA graphs table, GPU verdicts) from
    the CPU run's figures relabelled as CUDA ones, through ``--render``."""
    res = json.loads(json.dumps(cpu_run["json"]))
    res["environment"].update(device="cuda", gpu={"name": "NVIDIA H200", "capability": "9.0", "memory_gib": 139.8,
                                                  "multiprocessors": 132, "cudnn": 91000, "driver": "580.1"})
    demo = res["families"]["demo"]
    for name in CPU_BACKENDS[1:]:
        demo["backends"][name]["device"] = "cuda"
        demo["backends"][name]["parity_ieee_fp32"] = demo["backends"][name]["parity"]
    demo["backends"]["eager"]["latency"]["64"]["speedup"]["median"] = 2.5
    demo["backends"]["torch.export"]["latency"]["64"]["speedup"]["median"] = 1.2
    demo["backends"]["eager"]["parity"]["w1.00"]["max_abs"] = 5e-3
    demo["cuda_graphs"] = {v: {"batch": 1, "ratio_vs": "torch.export+cuda_graphs",
                               "median_us": {"eager": 300.0, "torch.export": 400.0, "torch.export+cuda_graphs": 100.0},
                               "ratios": {"eager": {"median": r}, "torch.export": {"median": 4.0}}}
                           for v, r in (("w0.25", 3.0), ("w1.00", 1.4))}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(res))
    proc = _bench_gpu("--render", str(path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    verdicts = {(r["target"], r["family"], r["backend"]): r["verdict"] for r in json.loads(path.read_text())["targets"]}
    assert verdicts["parity", "demo", "eager"] == "FAIL"
    assert verdicts["parity", "demo", "torch.export"] == "pass"
    assert verdicts["width speedup, batch 64", "demo", "eager"] == "pass"
    assert verdicts["width speedup, batch 64", "demo", "torch.export"] == "FAIL"
    assert verdicts["width speedup, batch 64", "encoder", "eager"] == "n/a"  # still a CPU backend
    assert ("width speedup, batch 64", "demo", "onnxruntime/cpu") not in verdicts  # the reference
    assert verdicts["CUDA graphs vs eager, batch 1", "demo", "torch.export+cuda_graphs"] == "FAIL"  # w1.00: 1.4x
    md = (tmp_path / "GPU_RESULTS.md").read_text()
    assert "NVIDIA H200 (compute 9.0" in md and "| driver | 580.1 |" in md
    assert "### CUDA graphs at batch 1" in md and "| w1.00 | 300.0 | 400.0 | 100.0 | 1.40 | 4.00 |" in md
    assert "With TF32 off" in md


def test_the_cuda_probes_skip_with_the_reason_a_gpu_machine_without_them_gives(tiny_bundle, tmp_path):
    """Asked for CUDA, onnxruntime's CUDA provider and TensorRT are probed as on the GPU machine (whose
    image has neither); here too they must come back skipped, saying what is missing."""
    import importlib.util

    import onnxruntime as ort

    if importlib.util.find_spec("tensorrt") or "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this machine has TensorRT or onnxruntime's CUDA provider: the probes would open them")
    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")  # add_engines would write into it
    code = ("import json; from bench.gpu.backends import Skip, open_each; "
            f"items = list(open_each(None, {str(bundle)!r}, 'cuda', names=('onnxruntime/cuda', 'tensorrt'))); "
            "print(json.dumps([[i.name, i.reason] if isinstance(i, Skip) else repr(i) for i in items]))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (ort_name, ort_reason), (trt_name, trt_reason) = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ort_name == "onnxruntime/cuda" and "'CUDAExecutionProvider' is not available" in ort_reason
    assert trt_name == "tensorrt" and trt_reason.startswith("TensorRT is not installed")
