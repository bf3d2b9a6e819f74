"""The quantize rows: INT8 versus FP32, per variant of the MNIST-1D demo family: accuracy and onnxruntime
CPU latency; then issue 7's deployment targets on the same bundle (bench/quantize/deploy.py).

Steps: ``slimkit demo``'s own pipeline (:func:`slimkit.export.demo.run_demo`: residual 1-D CNN teacher,
SortedNet widths 0.25/0.5/0.75/1.0), then ``export.bundle(fam, ..., quantize="int8",
calibration=splits.val)``. Accuracy of both precisions on the test split through onnxruntime; latency
of both at batch 1 and 32 in the same run, 1 intra-op thread, interleaved FP32/INT8 rounds so machine
noise hits both alike; the speed-up is the ratio of the medians. Targets (issue 7): INT8 at most 1
point less accurate and at least 1.5x faster at batch 32.
"""

from __future__ import annotations

import os
import platform
import time

import numpy as np
import onnxruntime as ort
import torch

from bench.common import cpu_name, raw_session
from bench.core import Context, Measurement, Result, Row
from bench.quantize.deploy import deployment_checks
from bench.speed import per_call, ratio_summary
from slimkit import compress, export, runtime
from slimkit.export.demo import run_demo
from slimkit.runtime.manifest import resolve_file

__all__ = ["BATCHES", "TARGET_DROP", "TARGET_SPEEDUP", "measure"]

BATCHES = (1, 32)
TARGET_DROP, TARGET_SPEEDUP = 0.01, 1.5


def _accuracy(sess: ort.InferenceSession, loader) -> float:
    name = sess.get_inputs()[0].name
    hits = total = 0
    for x, y in loader:
        hits += int((sess.run(None, {name: x.numpy()})[0].argmax(-1) == y.numpy()).sum())
        total += len(y)
    return hits / total


def measure(row: Row, ctx: Context) -> Result:
    p = row.params
    t0 = time.perf_counter()
    out = ctx.scratch / f"demo-{p['samples']}"
    demo = run_demo(out, samples=p["samples"], teacher_epochs=p["teacher_epochs"], epochs=p["epochs"], threads=1,
                    progress=False, log=lambda *_: None)
    splits = compress.data.mnist1d(num_samples=p["samples"], layout="channels", seed=0)
    fam = compress.Family.load(out / "family")
    t_train = time.perf_counter() - t0
    bundle = export.bundle(fam, splits.example_input, out / "bundle-int8", overwrite=True, quantize="int8",
                           calibration=splits.val, latency_batches=())
    manifest = runtime.read_manifest(bundle)
    x_test = np.concatenate([x.numpy() for x, _ in splits.test])
    rows, ms = [], []
    for v in manifest.variants:
        twin = manifest.variant(f"{v.name}-int8")
        sess = {"fp32": raw_session(resolve_file(bundle, v.files["onnx"].path), 1),
                "int8": raw_session(resolve_file(bundle, twin.files["onnx"].path), 1)}
        r = {"variant": v.name, "macs": v.macs, "params": v.params, "quantization": twin.config["quantization"],
             "acc_fp32": _accuracy(sess["fp32"], splits.test), "acc_int8": _accuracy(sess["int8"], splits.test)}
        for b in BATCHES:
            x = np.ascontiguousarray(x_test[:b])
            feeds = {k: {s.get_inputs()[0].name: x} for k, s in sess.items()}
            calls = per_call({k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sess.items()}, row.timing[f"b{b}"])
            p50 = {k: float(np.median(t) * 1e3) for k, t in calls.items()}
            r[f"p50_ms_fp32_b{b}"], r[f"p50_ms_int8_b{b}"] = p50["fp32"], p50["int8"]
            r[f"speedup_b{b}"] = p50["fp32"] / p50["int8"]
            round_median = {k: np.median(t, axis=1) for k, t in calls.items()}
            for k in ("fp32", "int8"):
                ms.append(Measurement(k, f"{v.name}-b{b}", calls[k].ravel().tolist(), timing=f"b{b}",
                                      baseline=None if k == "fp32" else "fp32",
                                      extra={"variant": v.name, "batch": b, "threads": 1, "test_accuracy": r[f"acc_{k}"],
                                             **({"speedup_over_baseline_by_round": ratio_summary(
                                                 round_median["fp32"], round_median["int8"])} if k == "int8" else {})}))
        r["acc_drop_points"] = 100 * (r["acc_fp32"] - r["acc_int8"])
        r["meets_accuracy"] = r["acc_fp32"] - r["acc_int8"] <= TARGET_DROP + 1e-9
        r["meets_speedup_b32"] = r["speedup_b32"] >= TARGET_SPEEDUP
        rows.append(r)
        ctx.log(f"{v.name}: acc {r['acc_fp32']:.4f} -> {r['acc_int8']:.4f}, speed-up b1 "
                f"{r['speedup_b1']:.2f}x, b32 {r['speedup_b32']:.2f}x")
    t = row.timing["b1"]
    result = {"rows": rows, "settings": {"samples": p["samples"], "teacher_epochs": p["teacher_epochs"],
                                         "epochs": p["epochs"], "rounds": t.rounds, "calls": t.iterations,
                                         "threads": 1, "batches": list(BATCHES), "calibration": "val split",
                                         "test_samples": int(len(x_test)), "quick": row.quick},
              "teacher_test_accuracy": demo["teacher"]["test"]["accuracy"],
              "machine": {"cpu": f"{cpu_name()} ({os.cpu_count()} CPUs)", "python": platform.python_version(),
                          "onnxruntime": ort.__version__, "torch": torch.__version__},
              "timings_s": {"train": t_train}, "command": ctx.command}
    if p["deploy"]:
        ctx.log("deployment: Triton repository, Ray Serve, HTTP load")
        result["deployment"], m = deployment_checks(bundle, out, np.ascontiguousarray(x_test[:8]),
                                                    http_seconds=p["http_seconds"], scratch=ctx.scratch)
        ms += m
    result["timings_s"]["total"] = time.perf_counter() - t0
    return Result(doc=result, measurements=ms)
