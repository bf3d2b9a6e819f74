"""The quantize rows: the demo family's INT8 twins (bench/core.py: the interface)."""

from __future__ import annotations

from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("INT8 twins (`export.bundle(..., quantize=\"int8\")`, static QDQ, MinMax calibration) against FP32 per "
         "variant of the demo family: accuracy and ONNX Runtime latency at batch 1 and 32; then the same bundle in "
         "a Triton repository and behind Ray Serve, and Ray Serve's HTTP throughput against `slimkit serve`.")

MEASURE = "bench.quantize.run:measure"
MODEL = "demo family (SortedNet widths 0.25-1.00 of the zoo `rescnn`), MNIST-1D"

ROWS = [
    Row("quantize", "demo-int8", MODEL + " 10,000 samples, teacher 8 + SortedNet 6 epochs",
        "INT8 static QDQ vs FP32, 1 thread; Triton, Ray Serve (2 replicas), HTTP load 4 clients x 10 s", MEASURE,
        params={"samples": 10_000, "teacher_epochs": 8, "epochs": 6, "deploy": True, "http_seconds": 10.0},
        timing={"b1": Timing(20, 10, 100), "b32": Timing(20, 10, 100)}),
    Row("quantize", "demo-int8-quick", MODEL + " 2,000 samples, teacher 3 + SortedNet 2 epochs",
        "INT8 static QDQ vs FP32, 1 thread; Triton, Ray Serve, HTTP load 4 clients x 2 s", MEASURE, quick=True,
        params={"samples": 2_000, "teacher_epochs": 3, "epochs": 2, "deploy": True, "http_seconds": 2.0},
        timing={"b1": Timing(20, 3, 30), "b32": Timing(20, 3, 30)}),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``."""
    from bench.quantize.report import markdown

    doc = read(folder)
    return {"RESULTS.md": markdown(doc)} if doc else {}


def summary(folder: Path) -> list[str]:
    doc = read(folder)
    out = []
    for x in doc["rows"] if doc else []:
        ok = "met" if x["meets_accuracy"] and x["meets_speedup_b32"] else "not met"
        out.append(f"- {x['variant']}: INT8 accuracy {-x['acc_drop_points']:+.1f} points against FP32, {x['speedup_b32']:.2f}x "
                   f"faster at batch 32, {x['speedup_b1']:.2f}x at batch 1 (<= 1 point and >= 1.5x at batch 32: "
                   f"**{ok}**)")
    return out
