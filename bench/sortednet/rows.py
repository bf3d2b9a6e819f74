"""The SortedNet rows: the zoo ResCNN on MNIST-1D, widths 0.25 to 1.0 (see bench/core.py for the interface)."""

from __future__ import annotations

from pathlib import Path

from bench.common import WIDTHS
from bench.core import Row, Timing, read

__all__ = ["ABOUT", "ROWS", "render", "summary"]

ABOUT = ("SortedNet widths against independently trained networks of the same shapes (quality), ONNX "
         "parity, and `Engine.run` on the family's bundle: overhead over a hand-written `sess.run`, switching "
         "widths every call, latency per width at batch 1 and 64 (ONNX Runtime CPU, threads 1 and default).")

MODEL = "zoo `rescnn` (32, 64) / depths (2, 2), MNIST-1D"
MEASURE = "bench.sortednet.run:measure"

ROWS = [
    Row("sortednet", "rescnn", MODEL + " 10,000 samples",
        "widths 0.25-1.00; teacher T 8 epochs, SortedNet S 6; independents T + S epochs, seeds 0, 1", MEASURE,
        params={"samples": 10_000, "teacher_epochs": 8, "epochs": 6, "seeds": (0, 1), "seed": 0, "widths": WIDTHS},
        timing={"overhead": Timing(500, 30, 2000), "switch": Timing(400, 30, 2000),
                "lat_b1": Timing(25, 20, 100), "lat_b64": Timing(5, 20, 20)}),
    Row("sortednet", "rescnn-quick", MODEL + " 2,000 samples",
        "widths 0.25-1.00; T 3, S 2 epochs; independents seed 0", MEASURE, quick=True,
        params={"samples": 2_000, "teacher_epochs": 3, "epochs": 2, "seeds": (0,), "seed": 0, "widths": WIDTHS},
        timing={"overhead": Timing(300, 6, 300), "switch": Timing(300, 6, 300),
                "lat_b1": Timing(10, 5, 40), "lat_b64": Timing(5, 5, 8)}),
]


def render(folder: Path) -> dict[str, str]:
    """``RESULTS.md`` from ``results.json``."""
    from bench.sortednet.report import markdown

    doc = read(folder)
    return {"RESULTS.md": markdown(doc, json_path=folder / "results.json")} if doc else {}


def summary(folder: Path) -> list[str]:
    doc = read(folder)
    return [f"- **{t['status']}**: {t['target']}: {t['value']}" for t in doc["targets"]] if doc else []
