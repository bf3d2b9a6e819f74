"""The shared-weights rows: one weights file and ``share_weights`` against separate files, on the demo
family and a BERT-style encoder (bench/core.py: the interface; bench/shared_weights/run.py: what is measured)."""

from __future__ import annotations

from pathlib import Path

from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("One weights file for a nested family (`export.bundle`'s default) and `runtime.load(..., share_weights=True)` "
         "against the same family written as separate files: bundle bytes, the graph onnxruntime runs, resident "
         "memory added by loading (a fresh process per configuration), latency at batch 1 and 64 on onnxruntime and "
         "torch, and switching variant every call (SortedNet widths 0.25-1.00, `epochs=0`).")

MEASURE = "bench.shared_weights.run:measure_row"
SETTING = ("widths 0.25-1.00, epochs=0; bundles shared / separate / largest alone (+ torch.export){}; "
           "memory in a fresh process per configuration; latency b1/b64 and switching vs separate files, 1 thread")


def _timing(b1: Timing, b64: Timing, torch_b1: Timing, torch_b64: Timing, switch_b1: Timing, switch_b64: Timing,
            torch_switch_b1: Timing, torch_switch_b64: Timing) -> dict[str, Timing]:
    return {"b1": b1, "b64": b64, "torch_b1": torch_b1, "torch_b64": torch_b64, "switch_b1": switch_b1,
            "switch_b64": switch_b64, "torch_switch_b1": torch_switch_b1, "torch_switch_b64": torch_switch_b64}


QUICK = _timing(Timing(20, 3, 50), Timing(2, 3, 3), Timing(2, 3, 5), Timing(1, 3, 1), Timing(2, 3, 10),
                Timing(1, 3, 1), Timing(1, 3, 2), Timing(1, 3, 1))

ROWS = [
    Row("shared_weights", "demo", "demo family: SortedNet of the zoo `rescnn` (32, 64) / depths (2, 2), MNIST-1D 2,000 "
        "samples", SETTING.format(", INT8 twins"), MEASURE, params={"family": "demo", "samples": 2000, "int8": True},
        timing=_timing(Timing(200, 15, 1000), Timing(10, 15, 30), Timing(20, 15, 60), Timing(3, 15, 10),
                       Timing(20, 15, 150), Timing(2, 15, 6), Timing(2, 15, 8), Timing(1, 15, 2))),
    Row("shared_weights", "bert", "BERT-style encoder: zoo `transformer`, 4 layers, hidden 256, 4 heads, FFN 1024, "
        "MNIST-1D sequence 2,000 samples", SETTING.format(""), MEASURE,
        params={"family": "bert", "samples": 2000, "int8": False},
        timing=_timing(Timing(10, 15, 40), Timing(1, 15, 1), Timing(3, 15, 15), Timing(1, 15, 1),
                       Timing(1, 15, 5), Timing(1, 15, 2), Timing(1, 15, 2), Timing(1, 15, 2))),
    Row("shared_weights", "demo-quick", "demo family (MNIST-1D 1,000 samples)", SETTING.format(", INT8 twins"),
        MEASURE, quick=True, params={"family": "demo", "samples": 1000, "int8": True}, timing=QUICK),
    Row("shared_weights", "bert-quick", "small BERT-style encoder: zoo `transformer`, 2 layers, hidden 64, 2 heads, "
        "FFN 256 (MNIST-1D sequence 1,000 samples)", SETTING.format(""), MEASURE, quick=True,
        params={"family": "bert", "samples": 1000, "int8": False,
                "model": {"d_model": 64, "num_layers": 2, "num_heads": 2, "ffn_dim": 256}}, timing=QUICK),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``."""
    from bench.shared_weights.report import render as report

    doc = read(folder)
    return {"RESULTS.md": report(doc)} if doc and doc.get("families") else {}


def summary(folder: Path) -> list[str]:
    """The issue's targets per family, met or not."""
    from bench.shared_weights.report import targets

    doc = read(folder)
    return [f"- {name}: {what}: {value} (target {target}: **{'met' if ok else 'not met'}**)"
            for name, f in (doc or {}).get("families", {}).items() for what, target, value, ok in targets(f)
            if target != "reported"]
