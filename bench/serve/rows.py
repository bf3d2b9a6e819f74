"""The serving rows: the demo bundle behind ``slimkit serve`` and KServe (bench/core.py: the interface)."""

from __future__ import annotations

from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("`slimkit serve` against KServe 0.21's Python model server on the same ONNX file (closed loop, batch 1, "
         "JSON), its overhead over the in-process `Engine.run`, and the SLO controller against every fixed "
         "variant under a bursty open-loop trace.")

MEASURE = "bench.serve.run:measure"
FULL = "demo bundle (`slimkit demo`: SortedNet widths 0.25-1.00 of the zoo `rescnn`, MNIST-1D 10,000 samples)"
QUICK = "demo bundle (MNIST-1D 2,000 samples, teacher 3 + SortedNet 2 epochs)"
ENGINE = Timing(200, 1, 5000)  # in-process Engine.run p50: one round of single calls

DEMO_FULL = {"bundle": "slimkit-demo/bundle", "samples": 10_000, "teacher_epochs": 8, "epochs": 6}
DEMO_QUICK = {"samples": 2_000, "teacher_epochs": 3, "epochs": 2}

ROWS = [
    Row("serve", "kserve", FULL, "batch 1, concurrency 1/2/4/8/16/32, 4 s per point, 2 interleaved rounds; "
        "slimkit, KServe, slimkit with --inline-us 0", MEASURE, timing={"engine": ENGINE},
        params={"part": "kserve", **DEMO_FULL, "concurrencies": (1, 2, 4, 8, 16, 32), "seconds": 4.0, "rounds": 2}),
    Row("serve", "slo", FULL, "batch 64, bursty trace 4 cycles (3 s calm, 1.5 s burst), 2 rounds; fixed variants, "
        "SLO controller, min-gain 0", MEASURE,
        params={"part": "slo", **DEMO_FULL, "batch": 64, "cycles": 4, "rounds": 2}),
    Row("serve", "kserve-quick", QUICK, "batch 1, concurrency 1/4/16, 2 s per point, 1 round", MEASURE, quick=True,
        params={"part": "kserve", **DEMO_QUICK, "concurrencies": (1, 4, 16), "seconds": 2.0, "rounds": 1},
        timing={"engine": Timing(200, 1, 1000)}),
    Row("serve", "slo-quick", QUICK, "batch 64, bursty trace 2 cycles, 1 round", MEASURE, quick=True,
        params={"part": "slo", **DEMO_QUICK, "batch": 64, "cycles": 2, "rounds": 1}),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json`` (both rows' parts are needed)."""
    from bench.serve.report import render as report

    doc = read(folder) or {}
    return {"RESULTS.md": report(doc)} if "throughput" in doc and "slo" in doc else {}


def summary(folder: Path) -> list[str]:
    from bench.serve.report import targets

    doc = read(folder)
    if not doc:
        return []
    if "throughput" not in doc or "slo" not in doc:
        return ["- only part of the rows has run: " + ", ".join(k for k in ("throughput", "slo") if k in doc)]
    return [f"- {name}: **{'met' if met else 'not met'}** ({ev})" for name, met, ev in targets(doc)]
